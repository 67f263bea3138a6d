"""Normalisation (evasion, offsets), language detection and windows: pure functions."""

from __future__ import annotations

import unicodedata

import pytest

from deepfake_stream.text import detect_language, normalise, split_windows
from deepfake_stream.text.normalise import HOMOGLYPHS
from tests.texts import HUMAN, TURKISH, ai_english, evade


def test_ascii_text_is_unchanged_and_reports_nothing() -> None:
    n = normalise(HUMAN)
    assert n.text == HUMAN
    assert n.evasion == ()
    assert n.offsets == tuple(range(len(HUMAN) + 1))


def test_zero_width_bidi_and_homoglyphs_are_neutralised_with_offsets_kept() -> None:
    original = "p\u200bаypal \u202eуоur ассount\u202c ｌｏｇｉｎ"  # noqa: RUF001
    n = normalise(original)
    assert n.text == "paypal your account login"
    assert n.evasion == ("zero_width", "bidi", "homoglyph")
    for i, ch in enumerate(n.text):  # every kept character points at where it came from
        source = original[n.offsets[i]]
        assert HOMOGLYPHS.get(source, unicodedata.normalize("NFKC", source)) == ch
    assert n.offsets[-1] == len(original)
    assert n.original_span(0, 6) == (0, 7)  # "paypal" spans the zero-width space


def test_cyrillic_and_greek_writing_is_left_alone() -> None:
    for text in ("Привет, как дела? Сегодня хорошая погода.", "Καλημέρα, τι κάνεις σήμερα;"):
        n = normalise(text)
        assert n.text == text
        assert n.evasion == ()


def test_an_all_lookalike_word_in_latin_text_is_mapped() -> None:
    n = normalise("the сосоа was cold and the coffee was hot")  # noqa: RUF001
    assert n.text == "the cocoa was cold and the coffee was hot"
    assert n.evasion == ("homoglyph",)


def test_evaded_text_normalises_back_to_the_clean_text() -> None:
    clean = ai_english()
    n = normalise(evade(clean))
    assert n.text == clean
    assert set(n.evasion) == {"zero_width", "homoglyph"}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (HUMAN, "en"),
        ("Der Zug hatte wieder Verspätung, also bin ich zu Fuß gegangen, wie jeden Tag.", "de"),
        (TURKISH, "tr"),
        ("12345 67890 !!!", None),
    ],
)
def test_language_is_detected_offline_and_deterministically(text: str, code: str | None) -> None:
    assert {detect_language(text) for _ in range(3)} == {code}


def test_windows_overlap_by_half_cover_everything_and_keep_words_whole() -> None:
    text = HUMAN * 20
    w = split_windows(text, 3000, 64)
    assert w.bounds[0][0] == 0 and w.bounds[-1][1] == len(text)
    assert w.covered == len(text)
    for (s1, e1), (s2, _) in zip(w.bounds, w.bounds[1:], strict=False):
        assert s1 < s2 < e1  # they overlap
        assert s2 - s1 <= 1500 + 300  # at most half a window apart (plus the word snap)
    assert all(e - s <= 3000 for s, e in w.bounds)
    assert all(text[e - 1].isspace() for _, e in w.bounds[:-1])
    assert all(text[s - 1].isspace() for s, _ in w.bounds[1:])
    # A passage of half a window anywhere lies whole inside one window.
    for at in range(0, len(text) - 1200, 997):
        assert any(s <= at and at + 1200 <= e for s, e in w.bounds)


def test_a_short_text_is_one_window() -> None:
    assert split_windows("short text", 1500, 64).bounds == ((0, 10),)


def test_more_windows_than_allowed_are_spread_and_coverage_says_so() -> None:
    text = "word " * 20_000  # 100,000 characters
    w = split_windows(text, 1000, 8)
    assert len(w.bounds) == 8
    assert w.bounds[0][0] == 0 and w.bounds[-1][1] == len(text)
    assert 7000 < w.covered <= 8000
