"""The batch scorer of tiny-tfidf (models/tfidf_fast.py) against the per-gram reference.

The oracle is the original scoring: the reference analyzers of models/detectors/tfidf.py, a
Counter and a dict lookup per n-gram. Texts are chosen to break an encoder that takes
shortcuts: code points outside the BMP, combining characters, one-letter words (scikit-learn's
short-word rule), every kind of whitespace, lone surrogates, empty and 100,000-character texts,
and batches that cross the encoder's chunk boundaries.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from deepfake_stream.models import tfidf_fast
from deepfake_stream.models.detectors.tfidf import (
    _WHITESPACE,
    ANALYZERS,
    FORMAT,
    TOKENIZER,
    TfidfModel,
    prepare,
)
from deepfake_stream.models.registry import load_registry
from tests.detector_contract import ODD_TEXTS, TEXTS
from tests.unit.test_tfidf_fast import _reference_decision

ADVERSARIAL = [
    "",
    " ",
    "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u2029\u202f\u205f\u3000\ufeff",
    "a",
    "I x y z a b",  # padded one-letter words: " a " is yielded once and stops
    "ab cd ef",  # two-letter words: " ab " is the 4-gram, and the last
    "a  b\t\tc\n\n\nd   e \ufeff f\x85g\u3000h",  # runs of mixed whitespace
    "   leading and trailing   ",
    "😀🚀 \U0001d400\U0001d401\U0001d402 𐍈𐌰𐌹 🇩🇪 👩‍👩‍👧 outside the BMP",
    "e\u0301 q\u0301 a\u0308\u0304 \u1100\u1161\u11a8 ﬁ ǅ combining and compatibility",
    "ΣΟΦΟΣ ΟΔΟΣ. İstanbul ẞ straße ΑΣ-ΣΑ σς",  # final sigma, İ → i̇, ẞ
    "__init__ x_y _ __ 1 12 1_2 a-b a.b",  # \w is letters, digits and _
    "lone \ud800 surrogate \udfff and \x00 nul and \u200b\u200d zero-width",
    "日本語のテキスト 中文 العربية עברית हिन्दी",
    "!!!???... — «» “”",
    "word " * 20_000,  # 100,000 characters
    "x" * 100_000,  # one 100,000-character word
]


def _committed() -> TfidfModel:
    from deepfake_stream.models.artifacts import artifact_dir, load_verified

    spec = load_registry().resolve("tiny-tfidf")
    return TfidfModel(
        load_verified(artifact_dir(spec.artifact or "tiny-tfidf")).read_json("model.json")
    )


def _fuzz(n: int, seed: int) -> list[str]:
    """Random texts over pieces that stress tokenisation (seeded: failures reproduce)."""
    pieces = [
        *"abcdeIx1_-.'",
        " ", "  ", "\t", "\n", "\ufeff", "\x85", "\u3000",
        "é", "e\u0301", "İ", "Σ", "ß", "😀", "\U0001d400", "\ud800", "日本",
        "the", "in", "of", "conclusion", "important", "note",
    ]  # fmt: skip
    rng = random.Random(seed)
    return ["".join(rng.choices(pieces, k=rng.randint(0, 60))) for _ in range(n)]


def _synthetic(probes: list[str], blocks: list[tuple[str, int, int]], seed: int) -> TfidfModel:
    """A model whose vocabulary holds every n-gram of ``probes`` and some terms no analyzer
    makes (two spaces, inner space, wrong length, repeats): every window is a hit or a trap."""
    rng = np.random.default_rng(seed)
    payload_blocks = []
    for analyzer, lo, hi in blocks:
        grams = {g for t in probes for g in ANALYZERS[analyzer](prepare(t), lo, hi)}
        traps = ["a  b", " a  ", "x y", "", "abcdefghij", "the in of", "  "]
        vocab = sorted(grams) + traps + sorted(grams)[:5]  # repeated terms: the last index wins
        payload_blocks.append(
            {
                "name": analyzer,
                "analyzer": analyzer,
                "ngram_range": [lo, hi],
                "vocabulary": vocab,
                "idf": rng.uniform(1.0, 8.0, len(vocab)).tolist(),
                "coef": rng.normal(0.0, 2.0, len(vocab)).tolist(),
            }
        )
    payload = {
        "format": FORMAT,
        "tokenizer": TOKENIZER,
        "intercept": 0.25,
        "blocks": payload_blocks,
    }
    return TfidfModel(payload)


def _assert_matches_oracle(model: TfidfModel, texts: list[str]) -> None:
    ours = model.decision_function(texts)
    oracle = [_reference_decision(model, t) for t in texts]
    np.testing.assert_allclose(ours, oracle, rtol=0, atol=1e-9)


def test_committed_model_adversarial_texts() -> None:
    model = _committed()
    assert all(b.fast is not None for b in model.blocks)  # the batch path is the one tested
    _assert_matches_oracle(model, [*ADVERSARIAL, *TEXTS, *ODD_TEXTS])


def test_committed_model_fuzz() -> None:
    _assert_matches_oracle(_committed(), _fuzz(300, seed=12))


def test_batch_composition_does_not_change_scores() -> None:
    model = _committed()
    texts = [*_fuzz(150, seed=3), *ADVERSARIAL[:-2], *TEXTS] * 2  # > one 64-text chunk
    together = model.decision_function(texts)
    alone = np.array([model.decision_function([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-12)
    # A word pair of the vocabulary split across two texts of a batch is no pair.
    assert "in conclusion" in model.blocks[1].index
    split = ["notes in", "conclusion there"]
    each = [model.decision_function([t])[0] for t in split]
    np.testing.assert_allclose(model.decision_function(split), each, rtol=0, atol=1e-12)
    order = np.random.default_rng(0).permutation(len(texts))
    shuffled = model.decision_function([texts[i] for i in order])
    np.testing.assert_allclose(shuffled, together[order], rtol=0, atol=1e-12)


def test_long_texts_split_into_chunks() -> None:
    model = _committed()
    texts = ["word " * 20_000, "tiny", "x" * 100_000, "", *TEXTS, "é " * 50_000]
    chunks = [(start, b.size) for start, b in tfidf_fast.batches(texts)]
    assert len(chunks) > 1 and sum(size for _, size in chunks) == len(texts)
    _assert_matches_oracle(model, texts)


@pytest.mark.parametrize(
    "blocks",
    [
        [("char_wb", 1, 4), ("word", 1, 2)],
        [("char_wb", 2, 5), ("word", 1, 3)],
        [("char_wb", 3, 3), ("word", 2, 2)],
    ],
)
def test_every_window_in_the_vocabulary(blocks: list[tuple[str, int, int]]) -> None:
    probes = [*ADVERSARIAL[:-2], *_fuzz(60, seed=7), *TEXTS, *ODD_TEXTS[:-1]]
    model = _synthetic(probes, blocks, seed=1)
    assert all(b.fast is not None for b in model.blocks)
    _assert_matches_oracle(model, probes)
    _assert_matches_oracle(model, _fuzz(100, seed=8))  # texts it was not built from


def test_blocks_outside_the_fast_limits_use_the_reference_path() -> None:
    probes = [*ADVERSARIAL[:-2], *_fuzz(40, seed=5)]
    # lo > 3: a padded word shorter than lo is yielded whole, which windows cannot express.
    model = _synthetic(probes, [("char_wb", 4, 6), ("word", 1, 2)], seed=2)
    assert model.blocks[0].fast is None and model.blocks[1].fast is not None
    _assert_matches_oracle(model, probes)


def test_code_table_is_an_exact_map() -> None:
    rng = np.random.default_rng(4)
    keys = np.unique(rng.integers(0, 2**62, 5000))
    table = tfidf_fast.CodeTable(keys.tolist())
    home = ((keys.view(np.uint64) * tfidf_fast._FIBONACCI) >> table.shift).astype(np.intp)
    assert (table.keys[home] != keys).any()  # some keys were displaced: probing is exercised
    probe = np.concatenate([keys, rng.integers(0, 2**62, 5000), [0]])
    expected = {k: i for i, k in enumerate(keys.tolist())}
    assert table[probe].tolist() == [expected.get(k, len(keys)) for k in probe.tolist()]


def test_str_split_splits_on_exactly_the_whitespace_rule() -> None:
    """The encoder splits with ``str.split()`` plus U+FEFF instead of the artifact's regex."""
    every = "".join(map(chr, range(0x110000)))
    by_regex = set(re.findall(_WHITESPACE.pattern.removesuffix("+"), every))
    by_split = {c for c in every if len(f"a{c}b".split()) == 2} | {"\ufeff"}
    assert by_regex == by_split


def test_word_characters_are_res() -> None:
    table = tfidf_fast._word_chars()
    for c in ["a", "Z", "_", "5", "é", "日", "\U0001d400", "٣", " ", "-", "\ud800", "😀", "\u0301"]:
        assert bool(table[ord(c)]) == bool(re.fullmatch(r"\w", c)), repr(c)
