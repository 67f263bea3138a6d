"""Torch's intra-op thread count on CPU, chosen by measured speed (``WORKER_THREADS=0``).

Why measure rather than compute it from the core count: on cores shared with the broker, the
router and other jobs, more OpenMP threads can be much slower (they spin-wait for each other:
a 2-thread SmolLM2 forward measured 5x slower than a 1-thread one on two contended cores),
while on cores the rest of the system leaves idle they are up to twice as fast (2026-12-04,
`bench pipeline`: `small-perplexity` and `medium-embedding` scored at 0.55x and 0.53x of
their offline speed with the old fixed "cores minus one", i.e. one thread on two cores).
Which one holds changes with the load, so the worker keeps measuring: for each candidate
count, a moving average of seconds per character scored; the fastest is used, and every other
candidate is tried again once every ``probe_every`` calls, so a change in load is noticed.

Everything here runs in the worker's inference thread (the only thread that runs torch), so
it needs no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def candidates(cores: int) -> list[int]:
    """Thread counts worth trying: all of them on small machines, a few on large ones."""
    if cores <= 4:
        return list(range(1, cores + 1))
    return sorted({1, cores // 4, cores // 2, cores - 1, cores})


def _torch_threads() -> tuple[Callable[[], int], Callable[[int], None]]:
    import torch

    return torch.get_num_threads, torch.set_num_threads


class ThreadTuner:
    def __init__(
        self,
        cores: int,
        *,
        probe_every: int = 32,
        alpha: float = 0.3,
        threads: tuple[Callable[[], int], Callable[[int], None]] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.candidates = candidates(max(1, cores))
        self.probe_every = probe_every
        self.alpha = alpha
        self._get, self._set = threads or _torch_threads()
        self._clock = clock
        self.cost: dict[int, float] = {}
        """Per candidate: moving average of seconds per unit of work."""
        self.calls = 0
        self._next_probe = 0

    @property
    def best(self) -> int | None:
        return min(self.cost, key=self.cost.__getitem__) if self.cost else None

    def choose(self) -> int:
        """The thread count for the next call: each candidate once, then the fastest, with
        the others re-tried in turn every ``probe_every`` calls."""
        self.calls += 1
        untried = [c for c in self.candidates if c not in self.cost]
        if untried:
            return untried[0]
        best = self.best
        assert best is not None
        others = [c for c in self.candidates if c != best]
        if others and self.calls % self.probe_every == 0:
            self._next_probe = (self._next_probe + 1) % len(others)
            return others[self._next_probe]
        return best

    def record(self, threads: int, seconds: float, units: float) -> None:
        if units <= 0:
            return
        per_unit = seconds / units
        old = self.cost.get(threads)
        self.cost[threads] = per_unit if old is None else old + self.alpha * (per_unit - old)

    def run(self, fn: Callable[[], T], units: float) -> T:
        """Call ``fn`` (a forward pass over ``units`` of work) with the chosen thread count
        and learn from how long it took. A call that raises teaches nothing."""
        n = self.choose()
        if self._get() != n:
            self._set(n)
        started = self._clock()
        out = fn()
        self.record(n, self._clock() - started, units)
        return out
