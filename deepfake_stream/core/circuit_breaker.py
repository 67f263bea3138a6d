"""A circuit breaker for a remote backend: stop calling what keeps failing, probe it later.

closed ──N consecutive failures──▶ open ──cool-down elapsed──▶ half-open
  ▲                                  ▲                            │ one trial call
  └────────────── success ───────────┴──────── failure ◀──────────┘

While open every call is refused at once (no timeout is waited for); after the cool-down one
trial call goes through, and its outcome closes or re-opens the circuit. Thread-safe: the
worker's inference thread records outcomes while the event loop reads :attr:`accepting` for
heartbeats.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self, *, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failures < 1 or cooldown_s <= 0:
            raise ValueError("failures must be >= 1 and cooldown_s > 0")
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.cooldown_s:
            return "open"
        return "half_open"

    @property
    def accepting(self) -> bool:
        """False only while open: a half-open circuit wants traffic for its trial call."""
        return self.state != "open"

    def allow(self) -> bool:
        """May a call go through now? In half-open, only one caller gets the trial."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half_open" and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._trial_in_flight or self._consecutive >= self.failures:
                self._opened_at = self._clock()  # (re-)open: a failed trial waits a full cool-down
            self._trial_in_flight = False

    def retry_in(self) -> float:
        """Seconds until the next trial call is allowed (0 when not open)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self._opened_at + self.cooldown_s - self._clock())
