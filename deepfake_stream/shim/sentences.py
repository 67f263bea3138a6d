"""Sentence spans for ``detailed: true``: which parts of a text read as machine-written.

A sentence ends after ``.``, ``!``, ``?``, ``…`` or their CJK forms (optionally followed by a
closing quote or bracket) and whitespace, or at a line break. Spans are character offsets
into the original text, whitespace trimmed: ``text[start:end]`` is the sentence.

One pass over the text: each run of whitespace is looked at once (a boundary when it holds a
line break or follows a sentence end), and a CJK full stop ends its sentence by itself. No
pattern here can backtrack, so a long run of spaces costs linear time (a regular expression
with ``\\s*\\n\\s*`` took 45 s on 100,000 spaces).
"""

from __future__ import annotations

import re

_END = frozenset(".!?\u2026\u3002\uff01\uff1f")
_CLOSE = frozenset("\"'\u201d\u2019)]")
_CJK_STOPS = "\u3002\uff01\uff1f"
# Either a whole run of whitespace, or one CJK full stop (which needs no space after it).
_CANDIDATE = re.compile(rf"\s+|[{_CJK_STOPS}]")


def sentence_spans(text: str, limit: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of every non-blank sentence, in order; with ``limit``, stop once there
    are more than ``limit`` (the caller refuses the request: no need to split the rest)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _CANDIDATE.finditer(text):
        if limit is not None and len(spans) > limit:
            return spans
        a, b = match.span()
        if text[a] in _CJK_STOPS:
            _add(text, start, b, spans)
            start = b
        elif "\n" in match.group() or _ends_sentence(text, a):
            _add(text, start, a, spans)
            start = b
    _add(text, start, len(text), spans)
    return spans


def _ends_sentence(text: str, at: int) -> bool:
    """Whether the text just before ``at`` ends a sentence (end mark, maybe a closer)."""
    if at >= 1 and text[at - 1] in _END:
        return True
    return at >= 2 and text[at - 1] in _CLOSE and text[at - 2] in _END


def _add(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    """Add ``text[start:end]`` without its leading and trailing whitespace, unless blank."""
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        lead = len(piece) - len(piece.lstrip())
        spans.append((start + lead, start + lead + len(stripped)))
