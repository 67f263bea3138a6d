"""The circuit breaker: closed → open after N failures → half-open after the cool-down."""

from __future__ import annotations

import pytest

from deepfake_stream.core.circuit_breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(failures: int = 3, cooldown_s: float = 10.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(failures=failures, cooldown_s=cooldown_s, clock=clock), clock


def test_opens_after_n_consecutive_failures_only() -> None:
    b, _ = make(failures=3)
    b.record_failure()
    b.record_failure()
    assert b.state == "closed" and b.allow()
    b.record_failure()
    assert b.state == "open"
    assert not b.accepting
    assert not b.allow()


def test_success_resets_the_count() -> None:
    b, _ = make(failures=2)
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state == "closed"


def test_half_open_after_cooldown_lets_exactly_one_trial_through() -> None:
    b, clock = make(failures=1, cooldown_s=10)
    b.record_failure()
    clock.t += 9.9
    assert b.state == "open" and not b.allow()
    assert b.retry_in() == pytest.approx(0.1)
    clock.t += 0.1
    assert b.state == "half_open"
    assert b.accepting  # advertise again so traffic arrives for the trial
    assert b.allow()
    assert not b.allow()  # a second caller waits for the trial's outcome


def test_trial_success_closes() -> None:
    b, clock = make(failures=2, cooldown_s=5)
    b.record_failure()
    b.record_failure()
    clock.t += 5
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow() and b.retry_in() == 0


def test_trial_failure_reopens_for_a_full_cooldown() -> None:
    b, clock = make(failures=3, cooldown_s=5)
    for _ in range(3):
        b.record_failure()
    clock.t += 5
    assert b.allow()
    b.record_failure()  # one failed trial is enough, not N
    assert b.state == "open"
    clock.t += 4.9
    assert not b.allow()
    clock.t += 0.1
    assert b.allow()


def test_rejects_nonsense_configuration() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures=0, cooldown_s=1)
    with pytest.raises(ValueError):
        CircuitBreaker(failures=1, cooldown_s=0)
