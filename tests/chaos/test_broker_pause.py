"""The broker frozen (SIGSTOP) for 10 s mid-stream, then resumed (SIGCONT): nothing is lost,
scoring resumes within 30 s, and no service is left stuck."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from deepfake_stream.embedded_broker import EmbeddedBroker, free_port
from tests.chaos.streams import Watcher, accounting, healthy, publish, report
from tests.system import deepfake_up, wait_for_verdict_of

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow]

N = 6_000
RATE = 300  # items/s: the stream runs for 20 s, the pause falls in its middle
PAUSE_S = 10
RESUME_BOUND_S = 30


async def test_broker_paused_10s_then_resumed_loses_nothing_and_resumes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Our own broker, so the test holds its pid; `up` uses it because it answers.
    broker = EmbeddedBroker(port=free_port(), log_file=tmp_path / "tansu.log").start()
    try:
        with deepfake_up(
            tmp_path, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, WORKER_CPU_WORKERS="2"
        ) as up:
            assert "using the Kafka broker at" in up.log()
            await wait_for_verdict_of(up.bootstrap, "probe-0")
            children = sorted(
                up.children("deepfake-stream router") + up.children("deepfake-stream worker")
            )
            assert len(children) == 3
            items = healthy("b", N)
            ids = [i for i, _ in items]
            async with Watcher(up.bootstrap) as watch:
                started = time.monotonic()
                publishing = asyncio.create_task(publish(up.bootstrap, items, rate=RATE))
                await asyncio.sleep(6)
                before_pause = watch.count("b-")
                broker.pause()
                await asyncio.sleep(PAUSE_S)
                broker.resume()
                resumed_at = datetime.now(UTC)
                await publishing
                assert await watch.wait(lambda o: all(i in o.verdicts for i in ids), 240), (
                    f"{sum(i not in watch.out.verdicts for i in ids)} items without a verdict"
                )
                elapsed = time.monotonic() - started

                # Progress resumed: the first verdict scored after SIGCONT, by its scored_at.
                after = [
                    datetime.fromisoformat(v[0]["scored_at"])
                    for v in watch.out.verdicts.values()
                    if datetime.fromisoformat(v[0]["scored_at"]) >= resumed_at
                ]
                assert after, "nothing was scored after the broker resumed"
                resumed_in = (min(after) - resumed_at).total_seconds()

                # No consumer stuck: the same services, still consuming every partition.
                alive = sorted(
                    up.children("deepfake-stream router") + up.children("deepfake-stream worker")
                )
                probes = healthy("after", 64)
                await publish(up.bootstrap, probes)
                probe_ids = {i for i, _ in probes}
                assert await watch.wait(lambda o: probe_ids.issubset(o.verdicts), 60), (
                    "some partition is no longer consumed after the pause"
                )
                await asyncio.sleep(2)
            items_n, lost, dups = accounting(watch.out, ids)
            restarts = up.log().count("restarting in")
    finally:
        broker.stop()
    report(
        "broker-sigstop-10s",
        items_n,
        lost,
        dups,
        elapsed,
        verdicts_before_pause=before_pause,
        first_verdict_after_resume_s=f"{resumed_in:.1f}",
        service_restarts=restarts,
    )
    assert lost == 0
    assert resumed_in <= RESUME_BOUND_S
    assert alive == children, "every service rode out the pause (none died and was restarted)"
