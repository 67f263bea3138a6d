"""The fast n-gram path of tiny-tfidf scores exactly like the reference analyzers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from deepfake_stream.models.detectors.tfidf import ANALYZERS, TfidfModel, fast_grams, prepare
from deepfake_stream.models.registry import load_registry
from tests.detector_contract import ODD_TEXTS, TEXTS

PROBES = [
    *TEXTS,
    *ODD_TEXTS[:-1],
    "a I x y z: one-letter words, and a final a",
    "  leading and trailing spaces  ",
    "Zusammenfassend: el métro — IN CONCLUSION, İstanbul ΣΟΦΟΣ\t\n tabs",
    "",
]


def _reference_decision(model: TfidfModel, text: str) -> float:
    """The original per-gram Python scoring, kept here as the oracle."""
    total = model.intercept
    prepared = prepare(text)
    for b in model.blocks:
        counts = Counter(ANALYZERS[b.analyzer](prepared, *b.ngram_range))
        hits = [(b.index[g], c) for g, c in counts.items() if g in b.index]
        if not hits:
            continue
        idx = np.array([i for i, _ in hits])
        w = (np.log(np.array([c for _, c in hits], float)) + 1.0) * b.idf[idx]
        total += float(w @ b.coef[idx] / np.sqrt(w @ w))
    return total


@pytest.mark.parametrize("lo,hi", [(1, 4), (2, 5), (3, 3), (4, 6)])
def test_char_wb_grams_in_words_match_reference(lo: int, hi: int) -> None:
    for text in PROBES:
        p = prepare(text)
        fast = Counter(g for g in fast_grams("char_wb", p, lo, hi) if "  " not in g)
        assert fast == Counter(ANALYZERS["char_wb"](p, lo, hi)), text


def test_word_grams_match_reference() -> None:
    for text in PROBES:
        p = prepare(text)
        assert Counter(fast_grams("word", p, 1, 3)) == Counter(ANALYZERS["word"](p, 1, 3))


def test_committed_model_scores_identically() -> None:
    from deepfake_stream.models.artifacts import artifact_dir, load_verified

    spec = load_registry().resolve("tiny-tfidf")
    manifest = load_verified(artifact_dir(spec.artifact or "tiny-tfidf"))
    model = TfidfModel(manifest.read_json("model.json"))
    ours = model.decision_function(PROBES)
    oracle = [_reference_decision(model, t) for t in PROBES]
    np.testing.assert_allclose(ours, oracle, rtol=0, atol=1e-9)
