"""Sentence spans for ``detailed: true``: which parts of a text read as machine-written.

A sentence ends after ``.``, ``!``, ``?``, ``…`` or their CJK forms (optionally followed by a
closing quote or bracket) and whitespace, or at a line break. Spans are character offsets
into the original text, whitespace trimmed: ``text[start:end]`` is the sentence.
"""

from __future__ import annotations

import re

_END = r"[.!?\u2026\u3002\uff01\uff1f]"
_CLOSE = r"[\"'\u201d\u2019)\]]"
# CJK full stops need no space after them.
_BOUNDARY = re.compile(
    rf"(?:(?<={_END})|(?<={_END}{_CLOSE}))\s+|\s*\n\s*|(?<=[\u3002\uff01\uff1f])\s*"
)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every non-blank sentence, in order."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        _add(text, start, match.start(), spans)
        start = match.end()
    _add(text, start, len(text), spans)
    return spans


def _add(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))
