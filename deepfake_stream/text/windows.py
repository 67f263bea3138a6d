"""Windows that cover a whole text, and how their scores make the document's score.

A detector reads a bounded amount of text (a token limit, or what it was trained on). A
longer text is scored over windows of ``window_chars`` that overlap by half: starts spread
evenly from the first character to the last window's, at most half a window apart, each
edge moved to a word boundary (within a tenth of a window). So every character is scored,
and any passage of up to half a window lies whole inside one window, where it is not
diluted by its neighbours. All windows go to the detector in one batched call. When more
than ``max_windows`` would be needed (a setting: windows multiply a model's cost), that
many windows are spread evenly instead, with gaps between them, and ``covered`` (the
verdict's ``scored_chars``) says how much of the text was read: coverage is reported, never
silent.

The document's score is the highest window score (:func:`aggregate`): a long human text
with one AI-written section is flagged by that section's window. The README states what this
costs in false positives on human texts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Windows:
    bounds: tuple[tuple[int, int], ...]
    """``(start, end)`` of each window, in offsets of the text that was split, in order."""

    @property
    def covered(self) -> int:
        """Characters inside at least one window."""
        total, reached = 0, 0
        for s, e in self.bounds:
            total += max(0, e - max(s, reached))
            reached = max(reached, e)
        return total


def _to_boundary(text: str, at: int, slack: int, step: int) -> int:
    """``at``, moved by ``step`` (-1 back, +1 forward) to just after whitespace, if there is
    some within ``slack`` characters; else ``at``."""
    for k in range(at, at + step * slack, step):
        if 0 < k < len(text) and text[k - 1].isspace():
            return k
    return at


def window_count(size: int, window_chars: int, max_windows: int) -> int:
    """How many windows :func:`split_windows` gives a text of ``size`` characters."""
    if size <= window_chars:
        return 1
    return min(max_windows, math.ceil((size - window_chars) / max(1, window_chars // 2)) + 1)


def split_windows(text: str, window_chars: int, max_windows: int) -> Windows:
    size = len(text)
    if size <= window_chars:
        return Windows(bounds=((0, size),))
    n = window_count(size, window_chars, max_windows)
    if n == 1:
        return Windows(bounds=((0, window_chars),))
    step = (size - window_chars) / (n - 1)
    slack = max(1, window_chars // 10)
    bounds = []
    for i in range(n):
        start = round(i * step)
        end = start + window_chars
        if start > 0:
            start = _to_boundary(text, start, slack, +1)
        if end < size:
            end = _to_boundary(text, end, slack, -1)
        bounds.append((start, end))
    return Windows(bounds=tuple(bounds))


def aggregate(scores: Sequence[float]) -> float:
    """The document's score from its windows' scores: the highest one."""
    return max(scores)
