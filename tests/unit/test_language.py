"""Language detection finds exactly langdetect's n-grams, without its per-character walk."""

from __future__ import annotations

import random
from collections import Counter

from langdetect.detector_factory import init_factory

from deepfake_stream.text import detect_language
from deepfake_stream.text.language import SAMPLE_CHARS, _load, ngram_rows

# Scripts, capital runs, Vietnamese combining marks (normalised), URLs, mail addresses,
# punctuation (normalised to spaces), characters beyond the BMP and runs of spaces.
ALPHABET = (
    "aAbBzZ  .,;:!?'\"-ÄäÖöÉéßçÑñ漢字かなカナ한국어Привет مرحبا ơớờởỡợ\u0301\u0300"
    " http://x.y/z a@b.com ABC DEF ǅ \U0001d400\U0001d401 ☃\t\n0123"
)
SAMPLES = [
    "The NATO summit in Brussels ended on Tuesday.",
    "Der Zug hatte wieder Verspätung, also bin ich zu Fuß gegangen.",
    "ÉTÉ À PARIS: la ville est vide",
    "Mostly Русский текст with a few English words in it",
    "mail me at someone@example.com or see https://example.com/a?b=c",
    "Tiếng Việt có dấu",
    "",
    "   ",
]


def langdetect_rows(sample: str) -> Counter[int]:
    """What langdetect itself extracts (its Detector's append, cleaning and n-gram walk)."""
    init_factory()
    from langdetect.detector_factory import _factory as factory

    detector = factory.create()
    detector.append(sample)
    detector.cleaning_text()
    index = _load().index
    return Counter(index[g] for g in detector._extract_ngrams())


def random_samples(n: int) -> list[str]:
    rng = random.Random(20261204)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 80))) for _ in range(n)]


def test_ngrams_are_exactly_langdetects() -> None:
    differ = [
        s
        for s in SAMPLES + random_samples(2_000)
        if Counter(ngram_rows(s[:SAMPLE_CHARS])) != langdetect_rows(s[:SAMPLE_CHARS])
    ]
    assert differ == []


def test_a_word_cached_at_the_end_of_one_text_is_not_reused_mid_text() -> None:
    # "Fuß" ends one sample (no space after it) and sits mid-text in the next: its n-grams
    # differ ("ß " only mid-text), so the cache must tell the two apart.
    assert Counter(ngram_rows("zu Fuß")) == langdetect_rows("zu Fuß")
    assert Counter(ngram_rows("zu Fuß gegangen")) == langdetect_rows("zu Fuß gegangen")


def test_detection_is_unchanged_for_plain_languages() -> None:
    assert detect_language(SAMPLES[0]) == "en"
    assert detect_language(SAMPLES[1]) == "de"
    assert detect_language("La ville est vide en été, et les rues sont calmes.") == "fr"
    assert detect_language("1234 5678 !!!") is None
