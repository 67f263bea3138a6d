"""Windows that cover a whole text, and how their scores make the document's score.

A detector reads a bounded amount of text (a token limit, or what it was trained on). A
longer text is cut into ``n = ceil(len / window_chars)`` windows of equal length, each end
moved back to the nearest whitespace (within a tenth of a window) so no word is split, and
all windows are scored in one batched call. When ``n`` would exceed ``max_windows`` (a
setting, since windows multiply a slow model's cost), ``max_windows`` windows of
``window_chars`` are spread evenly over the text instead, and ``scored_chars`` says how much
of it was read: coverage is reported, never silent.

The document's score is the highest window score (:func:`aggregate`): a long human text
with one AI-written section is flagged by that section's window. The README states what this
costs in false positives on human texts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True, slots=True)
class Windows:
    bounds: tuple[tuple[int, int], ...]
    """``(start, end)`` of each window, in offsets of the text that was split."""

    @property
    def covered(self) -> int:
        return sum(e - s for s, e in self.bounds)


def _snap(text: str, at: int, slack: int, lo: int) -> int:
    """``at``, moved back to just after the nearest whitespace within ``slack`` characters."""
    for k in range(at, max(lo + 1, at - slack), -1):
        if text[k - 1].isspace():
            return k
    return at


def split_windows(text: str, window_chars: int, max_windows: int) -> Windows:
    size = len(text)
    if size <= window_chars:
        return Windows(bounds=((0, size),))
    n = math.ceil(size / window_chars)
    if n > max_windows:
        # Spread max_windows windows evenly; the gaps between them are not scored.
        step = (size - window_chars) / (max_windows - 1) if max_windows > 1 else 0
        starts = [round(i * step) for i in range(max_windows)]
        return Windows(bounds=tuple((s, min(size, s + window_chars)) for s in starts))
    slack = max(1, size // n // 10)
    cuts = [0]
    for i in range(1, n):
        cuts.append(_snap(text, round(i * size / n), slack, cuts[-1]))
    cuts.append(size)
    return Windows(bounds=tuple(pairwise(cuts)))


def aggregate(scores: Sequence[float]) -> float:
    """The document's score from its windows' scores: the highest one."""
    return max(scores)
