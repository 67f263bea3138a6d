# ruff: noqa: RUF001  (look-alike letters are the point of these texts)
"""Texts and the Python reference for the JavaScript tiny-tfidf scorer's parity tests.

A plain helper module (not a conftest): the Node.js unit test and the headless Chromium
integration test score the same texts and compare against the same reference.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_stream.models.base import Detector
from deepfake_stream.models.detectors.tfidf import (
    FORMAT,
    TOKENIZER,
    TfidfModel,
    char_wb_ngrams,
    prepare,
    word_ngrams,
)
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.registry import load_registry
from tests.detector_contract import ODD_TEXTS, TEXTS

SCORER_JS = Path(__file__).parents[1] / "deepfake_stream" / "shim" / "static" / "tfidf-scorer.js"
TOLERANCE = 1e-6
"""The issue's bar for |JS - Python| on scores; logits are held to the same."""

_LABELLED = Path(__file__).parent / "data" / "labelled_small.jsonl"

PARITY_TEXTS: list[str] = [
    *TEXTS,
    *ODD_TEXTS,
    # English, as upstream platforms send it
    "Honestly the new update broke my phone's battery, it's at 40% by noon now!!",
    "As an AI language model, I can provide a comprehensive overview of the key factors.",
    # German: ß (no single-character uppercase), umlauts, ẞ (capital sharp s)
    "Die Straße ist GROẞ, und Müller wohnt in Köln. Maß und Masse, SCHLOẞ und Schloss.",
    # French: accents, ligatures, elision, non-breaking spaces before punctuation
    "L'été dernier, nous sommes allés à Noël\u00a0: c'était «\u202fformidable\u202f» ! Œuvre.",
    # Spanish: ñ, inverted marks, accented capitals
    "¿Dónde está el niño? ¡ÉL ESTÁ EN LA MONTAÑA! Año, pingüino, acción.",
    # Turkish dotted capital I, dotless i; Greek final sigma at word ends and alone
    "İSTANBUL İzmir ıspanak DİYARBAKIR and ΟΔΟΣ ΣΟΦΟΣ Σ ΣΑΣ. ὈΔΥΣΣΕΎΣ",
    # emoji: astral code points, skin tones, ZWJ sequences, flags, keycaps
    "Loved it 😍😍👍🏽 family 👨‍👩‍👧‍👦 flags 🇩🇪🇫🇷 keycap 1️⃣ 🫠 done",
    # every kind of white space the tokeniser folds, mixed
    "tab\there\nnew\r\nline\u00a0nbsp\u2003em\u3000ideo\u2028ls\u2029ps"
    "\x1c\x1d\x1e\x1f\x85\ufeff end\u200b zero-width is no space",
    # NFC: decomposed and precomposed spell the same words
    "Cafe\u0301 vs Café, n\u0303 vs ñ, A\u030a vs Å, ﬁ ligature, Ⅻ numeral, ½",
    # math alphanumerics and other astral letters (no case mapping), digits in other scripts
    "𝐁𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐 𐐀𐐨 Deseret ٣٤٥ ३४५ 123_abc __init__",
    # empty-ish
    "\n",
    ".",
    "x y",
    # very long: a mixed paragraph repeated to the contract's 100,000 characters
    ("Moreover, it is worth noting that Straße, café and niño 😀 all matter. " * 1500)[:100_000],
]
PARITY_TEXTS += [
    json.loads(line)["text"] for line in _LABELLED.read_text().splitlines() if line.strip()
]


def python_reference(texts: list[str]) -> tuple[str, np.ndarray, np.ndarray]:
    """(model_version, scores from the tiny-tfidf detector, logits) for ``texts``."""
    detector: Detector = build_detector(load_registry().resolve("tiny-tfidf").spec())
    asyncio.run(detector.load())
    try:
        scores = np.array([s.score for s in detector.predict_batch(texts)])
        model: TfidfModel = detector._model  # type: ignore[attr-defined]
        logits = model.decision_function(texts)
        return detector.version, scores, logits  # type: ignore[attr-defined]
    finally:
        asyncio.run(detector.unload())


def every_ngram_model(texts: list[str], seed: int = 7) -> dict[str, Any]:
    """A synthetic tiny-tfidf payload in which every n-gram of ``texts`` is a feature with its
    own weight. The shipped vocabulary has no emoji and few rare letters, so code points versus
    UTF-16 units, case mapping or white space could differ unseen on it; not on this one."""
    rng = np.random.default_rng(seed)
    blocks = []
    for analyzer, (lo, hi) in (("char_wb", (1, 4)), ("word", (1, 2))):
        ngrams = char_wb_ngrams if analyzer == "char_wb" else word_ngrams
        vocab = sorted({g for t in texts for g in ngrams(prepare(t), lo, hi)})
        blocks.append(
            {
                "name": analyzer,
                "analyzer": analyzer,
                "ngram_range": [lo, hi],
                "vocabulary": vocab,
                "idf": rng.uniform(1.0, 6.0, len(vocab)).tolist(),
                "coef": rng.normal(0.0, 1.0, len(vocab)).tolist(),
            }
        )
    return {"format": FORMAT, "tokenizer": TOKENIZER, "intercept": -0.25, "blocks": blocks}


def max_differences(texts: list[str], js: list[list[float]]) -> tuple[float, float]:
    """(max |JS - Python| on scores, on logits); ``js`` holds [score, logit] per text."""
    _, scores, logits = python_reference(texts)
    js_arr = np.asarray(js, dtype=np.float64)
    assert js_arr.shape == (len(texts), 2)
    return (
        float(np.max(np.abs(js_arr[:, 0] - scores))),
        float(np.max(np.abs(js_arr[:, 1] - logits))),
    )
