# ruff: noqa: RUF001  (the look-alike letters below are the point of this module)
"""Neutralising text manipulations before scoring, keeping offsets into the original.

Detectors are fooled by characters a reader never sees or cannot tell apart: zero-width
characters between letters, bidi controls, and Cyrillic/Greek/fullwidth letters that look
Latin. :func:`normalise` removes or maps them, reports which kinds it found (the verdict's
``evasion``), and keeps, for every character of the normalised text, the offset of the
original character it came from, so windows and spans are reported on the text as received.

Homoglyphs are mapped only inside mostly-Latin writing: a Cyrillic letter in a word that
also has Latin letters, or a word made only of look-alike letters in a text whose letters are
mostly Latin. A Russian or Greek text is left as it is.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u180e\u00ad")
"""Invisible characters: zero-width space/joiners, word joiner, invisible operators, BOM,
Mongolian vowel separator, soft hyphen."""
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
"""Bidirectional embedding, override, isolate and mark characters."""
HOMOGLYPHS: dict[str, str] = {
    # Cyrillic
    **dict(zip("аеорсухіјѕԁԛԝһӏ", "aeopcyxijsdqwhl", strict=True)),
    **dict(zip("АВЕКМНОРСТХУІЈЅԌ", "ABEKMHOPCTXYIJSG", strict=True)),
    # Greek
    **dict(zip("αοριυνκχ", "aopiuvkx", strict=True)),
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)),
}
"""Cyrillic and Greek letters that render like a Latin letter, and that letter."""


def _compat_homoglyph(ch: str) -> bool:
    """Fullwidth forms and mathematical alphanumerics: NFKC maps them to ASCII letters."""
    code = ord(ch)
    return 0xFF01 <= code <= 0xFF5E or 0x1D400 <= code <= 0x1D7FF


@dataclass(frozen=True, slots=True)
class Normalised:
    original: str
    text: str
    """The normalised text the detector scores."""
    offsets: tuple[int, ...]
    """``offsets[i]``: index in ``original`` of the character ``text[i]`` came from; one more
    entry, ``len(original)``, for the end."""
    evasion: tuple[str, ...]
    """Kinds found, in a fixed order: ``zero_width``, ``bidi``, ``homoglyph``."""

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Offsets in the original text of ``text[start:end]``."""
        return self.offsets[start], self.offsets[end]

    @property
    def words(self) -> int:
        """What ``min_words`` and a verdict's ``too_short`` count."""
        return len(self.text.split())


_SUSPECT = re.compile("[" + re.escape("".join(sorted(ZERO_WIDTH | BIDI | set(HOMOGLYPHS)))) + "]")


def normalise(original: str) -> Normalised:
    if original.isascii() or (
        unicodedata.is_normalized("NFKC", original) and not _SUSPECT.search(original)
    ):  # nothing to neutralise (most texts): skip the per-character pass
        return Normalised(
            original=original,
            text=original,
            offsets=tuple(range(len(original) + 1)),
            evasion=(),
        )
    found: set[str] = set()
    chars: list[str] = []
    offsets: list[int] = []
    for i, ch in enumerate(original):
        if ch in ZERO_WIDTH:
            found.add("zero_width")
            continue
        if ch in BIDI:
            found.add("bidi")
            continue
        mapped = unicodedata.normalize("NFKC", ch) if ord(ch) > 0x7F else ch
        if mapped != ch and _compat_homoglyph(ch):
            found.add("homoglyph")
        chars.extend(mapped)
        offsets.extend([i] * len(mapped))
    if _map_homoglyphs(chars):
        found.add("homoglyph")
    offsets.append(len(original))
    order = ("zero_width", "bidi", "homoglyph")
    return Normalised(
        original=original,
        text="".join(chars),
        offsets=tuple(offsets),
        evasion=tuple(k for k in order if k in found),
    )


def _map_homoglyphs(chars: list[str]) -> bool:
    """Map look-alike letters in place (one character for one: offsets are unchanged)."""
    if not any(c in HOMOGLYPHS for c in chars):
        return False
    latin = sum(1 for c in chars if c.isascii() and c.isalpha())
    foreign = sum(1 for c in chars if c.isalpha() and not c.isascii() and c not in HOMOGLYPHS)
    mostly_latin = latin > foreign
    changed = False
    start = 0
    while start < len(chars):
        if not chars[start].isalpha():
            start += 1
            continue
        end = start
        while end < len(chars) and chars[end].isalpha():
            end += 1
        word = chars[start:end]
        glyphs = [c in HOMOGLYPHS for c in word]
        has_latin = any(c.isascii() for c in word)
        if any(glyphs) and (has_latin or (all(glyphs) and mostly_latin)):
            for k in range(start, end):
                if chars[k] in HOMOGLYPHS:
                    chars[k] = HOMOGLYPHS[chars[k]]
            changed = True
        start = end
    return changed


def word_count(original: str) -> int:
    """:attr:`Normalised.words` of ``original``."""
    return normalise(original).words
