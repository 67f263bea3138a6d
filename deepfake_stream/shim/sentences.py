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


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every non-blank sentence, in order."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _CANDIDATE.finditer(text):
        a, b = match.span()
        if text[a] in _CJK_STOPS:
            _add(start, b, spans)
            start = b
        elif "\n" in match.group() or _ends_sentence(text, a):
            _add(start, a, spans)
            start = b
    _add(start, len(text), spans)
    return [(a, b) for a, b in (_trim(text, a, b) for a, b in spans) if b > a]


def _ends_sentence(text: str, at: int) -> bool:
    """Whether the text just before ``at`` ends a sentence (end mark, maybe a closer)."""
    if at >= 1 and text[at - 1] in _END:
        return True
    return at >= 2 and text[at - 1] in _CLOSE and text[at - 2] in _END


def _add(start: int, end: int, spans: list[tuple[int, int]]) -> None:
    if end > start:
        spans.append((start, end))


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    # Pieces hold no whitespace run at their ends except the text's own leading/trailing one,
    # which str.strip measures in C.
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    return start + lead, start + len(piece.rstrip())
