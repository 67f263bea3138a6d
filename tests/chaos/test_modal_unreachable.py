"""Modal unreachable (a remote that hangs, or a lookup refused with Modal's AuthError) while a
stream of large-model items arrives: every item is scored by the CPU fallback within a bound.

The bridge is the real service (``serve_worker(settings, "modal", ...)`` with a ModalDetector,
as ``deepfake-stream modal-bridge`` runs it); only its remote call is injected.
"""

from __future__ import annotations

import time

import pytest

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.models.modal_detector import ModalDetector
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.routing.service import serve_router
from deepfake_stream.schemas import Verdict
from tests.chaos.streams import report
from tests.doubles import EchoDetector, register_doubles
from tests.integration.harness import collect, publish, running, wait_live
from tests.modal_fakes import auth_error, connect_to, failing_lookup, hang
from tests.system import Outcome

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow]

N = 500
TIMEOUT_S = 2.0
FAILURES = 3  # the breaker opens after this many failed batches (MODAL_BREAKER_FAILURES)
# Worst case: FAILURES batches each wait the whole Modal timeout before the breaker opens
# and the router stops routing to Modal; on top, broker round trips and fetch waits (well
# under 5 s here) and the CPU scoring of N echo items.
BOUND_S = FAILURES * TIMEOUT_S + 10.0


@pytest.mark.parametrize("failure", ["hang", "auth"])
async def test_modal_unreachable_every_large_item_scored_by_a_fallback_in_bounded_time(
    kafka_bootstrap: str, failure: str
) -> None:
    from tests.conftest import unique_settings

    register_doubles()
    registry = registry_from_dict(
        {
            "models": {
                "big": {
                    "kind": "echo",
                    "size": "large",
                    "version": "t1",
                    "backends": ["modal", "cpu"],
                }
            }
        },
        default_model="big",
        source="test",
    )
    settings = unique_settings(
        kafka_bootstrap,
        modal__timeout_s=TIMEOUT_S,
        modal__breaker_failures=FAILURES,
        modal__breaker_cooldown_s=300,
    )
    connect = connect_to(hang) if failure == "hang" else failing_lookup(auth_error())
    bridge = ModalDetector(registry.models["big"].spec("remote"), settings.modal, connect=connect)
    cpu = EchoDetector(registry.models["big"].spec())
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        lambda stop: serve_worker(
            settings, "modal", registry=registry, detectors={"big": bridge}, stop=stop
        ),
        lambda stop: serve_worker(
            settings, "cpu", registry=registry, detectors={"big": cpu}, stop=stop
        ),
    ):
        await wait_live(settings, "modal")
        await wait_live(settings, "cpu", "big")
        # Every consumer group holds its partitions before the clock starts (joins take
        # seconds on a fresh group); the warm-up item is scored like the others.
        await publish(settings, [{"id": "warm", "text": "warm up"}])
        await collect(settings, verdicts=1, timeout=60)
        ids = [f"big-{i}" for i in range(N)]
        started = time.monotonic()
        await publish(settings, [{"id": i, "text": f"a long essay, part {i}"} for i in ids])
        results = await collect(settings, verdicts=N + 1, timeout=120, settle=1.0)
        elapsed = time.monotonic() - started

    out = Outcome()
    for a in results.verdicts:
        v = a.json()
        out.verdicts.setdefault(v["id"], []).append(v)
    got = {i: vs[0] for i, vs in out.verdicts.items() if i in set(ids)}
    lost = N - len(got) - sum(1 for a in results.dead if a.key in set(ids))
    dups = sum(len(out.verdicts[i]) - 1 for i in got)
    tried = sum(v["fallback_from"] == ["modal"] for v in got.values())
    worst_ms = max(v["latency_ms"] for v in got.values()) if got else 0.0
    report(
        f"modal-unreachable-{failure}",
        N,
        lost,
        dups,
        elapsed,
        tried_modal_first=tried,
        worst_latency_s=f"{worst_ms / 1000:.1f}",
        bound_s=BOUND_S,
    )
    assert set(got) == set(ids), f"{N - len(got)} items without a verdict"
    for v in got.values():
        Verdict.model_validate(v)
        assert v["backend"] == "cpu", v
        assert v["fallback_from"] in (["modal"], [])
    if failure == "hang":
        assert tried > 0, "Modal was tried (and timed out) before the breaker opened"
    assert not bridge.ready, "the breaker is open / the app is unreachable: Modal not advertised"
    assert elapsed < BOUND_S, f"last verdict after {elapsed:.1f}s > {BOUND_S}s"
    assert worst_ms / 1000 < BOUND_S
