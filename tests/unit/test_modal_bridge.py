"""ModalDetector with injected remotes: timeouts, lookup failures, the circuit breaker, the
in-flight bound, and the real lookup path when no Modal credentials exist."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from deepfake_stream.consumers.isolate import score_isolating
from deepfake_stream.core.circuit_breaker import CircuitBreaker
from deepfake_stream.core.errors import BackendUnavailable, ModelError
from deepfake_stream.core.settings import ModalSettings
from deepfake_stream.models.base import Detector, DetectorSpec
from deepfake_stream.models.modal_detector import ModalDetector
from tests.modal_fakes import (
    FakeRemote,
    auth_error,
    connect_to,
    echo_score,
    failing_lookup,
    hang,
)

SPEC = DetectorSpec(model_id="m", kind="echo", version="t1", device="remote")


def settings(**kw: object) -> ModalSettings:
    base: dict[str, object] = {
        "app_name": "deepfake-stream-test",
        "timeout_s": 5.0,
        "max_inflight": 4,
        "max_batch": 32,
        "breaker_failures": 3,
        "breaker_cooldown_s": 60.0,
    }
    return ModalSettings(**{**base, **kw})  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_scores_in_order_and_reports_the_remote_version() -> None:
    remote = FakeRemote()
    d = ModalDetector(SPEC, settings(), connect=remote.connect())
    assert isinstance(d, Detector)
    assert not d.ready and d.version == "t1"
    assert d.numerics is None  # the remote machine's kernels are not known here
    await d.load()
    try:
        assert d.ready
        texts = [f"text {i}" for i in range(10)]
        scores = d.predict_batch(texts)
        assert [s.score for s in scores] == [echo_score(t) for t in texts]
        assert d.version == "t1+sha256:remote000000"
        assert d.predict_batch([]) == []
    finally:
        await d.unload()
    assert not d.ready


async def test_hanging_remote_raises_backend_unavailable_within_the_timeout() -> None:
    timeout = 0.3
    d = ModalDetector(SPEC, settings(timeout_s=timeout), connect=connect_to(hang))
    await d.load()
    try:
        started = time.perf_counter()
        with pytest.raises(BackendUnavailable, match=r"did not answer within 0\.3s"):
            d.predict_batch(["a", "b", "c"])
        elapsed = time.perf_counter() - started
    finally:
        await d.unload()
    print(f"hanging remote: BackendUnavailable after {elapsed * 1000:.0f} ms (timeout 300 ms)")
    assert timeout <= elapsed < timeout + 0.2


async def test_auth_error_on_lookup_leaves_it_not_ready_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = ModalDetector(SPEC, settings(), connect=failing_lookup(auth_error()))
    with caplog.at_level(logging.ERROR, logger="deepfake_stream.models.modal_detector"):
        await d.load()  # never raises: the bridge keeps running, advertising nothing
    try:
        assert not d.ready
        message = caplog.text
        assert "Modal app deepfake-stream-test not reachable / not authenticated" in message
        assert "AuthError: Token missing" in message
        assert "the router skips Modal" in message
        started = time.perf_counter()
        with pytest.raises(BackendUnavailable, match="not authenticated"):
            d.predict_batch(["x"])  # items already on the topic move on at once
        assert time.perf_counter() - started < 0.01
    finally:
        await d.unload()


async def test_lookup_is_retried_until_the_app_answers() -> None:
    remote = FakeRemote()
    attempts = 0

    async def flaky():  # type: ignore[no-untyped-def]
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("modal.com unreachable")
        return remote

    d = ModalDetector(SPEC, settings(breaker_cooldown_s=0.05), connect=flaky)
    await d.load()
    try:
        assert not d.ready
        deadline = time.monotonic() + 5
        while not d.ready and time.monotonic() < deadline:
            time.sleep(0.02)
        assert d.ready and attempts == 3
        assert len(d.predict_batch(["a"])) == 1
    finally:
        await d.unload()


async def test_lookup_that_hangs_gives_up_after_the_timeout() -> None:
    async def never():  # type: ignore[no-untyped-def]
        await hang([])

    d = ModalDetector(SPEC, settings(timeout_s=0.2), connect=never)
    started = time.perf_counter()
    await d.load()
    try:
        assert time.perf_counter() - started < 1.0
        assert not d.ready
        with pytest.raises(BackendUnavailable, match=r"no answer within 0\.2s"):
            d.predict_batch(["x"])
    finally:
        await d.unload()


async def test_breaker_opens_after_n_failures_then_fails_fast_and_stops_advertising() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=2, cooldown_s=30, clock=clock)
    d = ModalDetector(SPEC, settings(timeout_s=0.1), connect=connect_to(hang), breaker=breaker)
    await d.load()
    try:
        for _ in range(2):
            with pytest.raises(BackendUnavailable, match="did not answer"):
                d.predict_batch(["a"])
        assert breaker.state == "open"
        assert not d.ready  # heartbeats drop the model; the router skips Modal
        started = time.perf_counter()
        with pytest.raises(BackendUnavailable, match="circuit open"):
            d.predict_batch(["a", "b"])
        fast = time.perf_counter() - started
        print(f"open circuit: BackendUnavailable after {fast * 1e6:.0f} us")
        assert fast < 0.01
        clock.t += 30  # cool-down over: advertise again and let one trial through
        assert d.ready
        with pytest.raises(BackendUnavailable, match="did not answer"):
            d.predict_batch(["a"])
        assert breaker.state == "open" and not d.ready
    finally:
        await d.unload()


async def test_trial_success_closes_the_breaker() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown_s=10, clock=clock)
    remote = FakeRemote()
    calls = 0

    async def first_hangs(texts: list[str]):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            return await hang(texts)
        return await remote(texts)

    d = ModalDetector(
        SPEC, settings(timeout_s=0.1), connect=connect_to(first_hangs), breaker=breaker
    )
    await d.load()
    try:
        with pytest.raises(BackendUnavailable):
            d.predict_batch(["a"])
        assert not d.ready
        clock.t += 10
        assert [s.score for s in d.predict_batch(["a"])] == [echo_score("a")]
        assert breaker.state == "closed" and d.ready
    finally:
        await d.unload()


async def test_in_flight_bound_is_respected_and_large_batches_are_split() -> None:
    remote = FakeRemote(delay_s=0.05)
    d = ModalDetector(SPEC, settings(max_inflight=3, max_batch=8), connect=remote.connect())
    await d.load()
    try:
        texts = [f"t{i}" for i in range(100)]
        scores = d.predict_batch(texts)
    finally:
        await d.unload()
    assert [s.score for s in scores] == [echo_score(t) for t in texts]  # order kept
    assert sorted(remote.calls) == sorted([8] * 12 + [4])
    assert remote.max_in_flight == 3


async def test_remote_model_error_is_one_failed_call_and_trips_the_breaker() -> None:
    """A broken deployment: each batch costs one remote call (no halving into 2n-1), the
    batch is handed on whole, and the circuit opens after MODAL_BREAKER_FAILURES."""
    calls: list[int] = []

    async def poisoned(texts: list[str]):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        raise ModelError("the deployed detector fails on everything")

    breaker = CircuitBreaker(failures=2, cooldown_s=60)
    d = ModalDetector(SPEC, settings(), connect=connect_to(poisoned), breaker=breaker)
    await d.load()
    try:
        outcomes = score_isolating(d, [f"t{i}" for i in range(8)])
        assert calls == [8]
        assert all(isinstance(o.error, BackendUnavailable) for o in outcomes)
        assert breaker.state == "closed"
        score_isolating(d, ["a", "b"])
        assert calls == [8, 2] and breaker.state == "open" and not d.ready
    finally:
        await d.unload()


@pytest.mark.parametrize(
    "answer",
    [{"scores": [0.5]}, {"scores": [0.5, 0.5, 0.5], "model_version": "v"}, ["not", "a dict"]],
)
async def test_unexpected_answers_are_backend_failures(answer: object) -> None:
    async def odd(texts: list[str]):  # type: ignore[no-untyped-def]
        return answer

    d = ModalDetector(SPEC, settings(), connect=connect_to(odd))
    await d.load()
    try:
        with pytest.raises(BackendUnavailable):
            d.predict_batch(["a", "b"])
    finally:
        await d.unload()


async def test_other_remote_exceptions_are_backend_failures() -> None:
    async def broken(texts: list[str]):  # type: ignore[no-untyped-def]
        raise OSError("connection reset by peer")

    d = ModalDetector(SPEC, settings(), connect=connect_to(broken))
    await d.load()
    try:
        with pytest.raises(BackendUnavailable, match="connection reset"):
            d.predict_batch(["a"])
    finally:
        await d.unload()


async def test_real_lookup_without_credentials_is_not_ready(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No injection: the real ``modal.Cls.from_name(...).hydrate`` path, unauthenticated."""
    for var in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "no-modal.toml"))
    import modal.config

    if modal.config.config.get("token_id"):
        pytest.skip("Modal credentials are configured on this machine")
    d = ModalDetector(SPEC, settings(timeout_s=10))
    started = time.perf_counter()
    await d.load()
    try:
        elapsed = time.perf_counter() - started
        assert not d.ready
        with pytest.raises(BackendUnavailable, match="not reachable / not authenticated"):
            d.predict_batch(["x"])
    finally:
        await d.unload()
    assert elapsed < 10  # it fails, it does not hang
