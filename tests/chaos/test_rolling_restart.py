"""SIGTERM rolling restart of every service under `up` during a stream: each service drains its
batch and commits before it exits, so nothing is lost and nothing is scored twice."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request

import pytest

from deepfake_stream.embedded_broker import free_port
from tests.chaos.streams import SAMPLES, Watcher, accounting, publish, report
from tests.system import UpProcess, deepfake_up, wait_for_verdict_of

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow]

RATE = 250  # items/s: a steady stream that outlasts the four restarts
MIN_ITEMS = 5_000


def _ready(up: UpProcess, role: str, pid: int, http_port: int) -> bool:
    """The restarted child is back: consuming (router, workers) or answering (shim)."""
    if role == "shim":
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False
    return any(f"pid={pid}]" in line and "consuming" in line for line in up.log().splitlines())


async def _restart(up: UpProcess, needle: str, role: str, http_port: int) -> float:
    """SIGTERM one child matching ``needle``; wait for its replacement to be back."""
    before = set(up.children(needle))
    assert before, f"no {role} running:\n{up.log()[-2000:]}"
    victim = min(before)
    started = time.monotonic()
    os.kill(victim, signal.SIGTERM)
    deadline = started + 90
    while True:
        assert time.monotonic() < deadline, f"{role} did not come back:\n{up.log()[-3000:]}"
        new = set(up.children(needle)) - before
        if new and _ready(up, role, next(iter(new)), http_port):
            break
        await asyncio.sleep(0.25)
    assert f"pid={victim} exited with code 0" in up.log(), f"{role} pid={victim} did not drain"
    return time.monotonic() - started


async def test_sigterm_rolling_restart_of_every_service_loses_and_duplicates_nothing(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    http_port = free_port()
    with deepfake_up(
        tmp_path, WORKER_CPU_WORKERS="2", WORKER_MAX_BATCH_SIZE="64", HTTP_PORT=str(http_port)
    ) as up:
        await wait_for_verdict_of(up.bootstrap, "probe-0")
        assert len(up.children("deepfake-stream worker --backend cpu")) == 2
        async with Watcher(up.bootstrap) as watch:
            restarted = asyncio.Event()
            ids: list[str] = []

            def stream():  # type: ignore[no-untyped-def]
                i = 0
                while i < MIN_ITEMS or not restarted.is_set():
                    item_id = f"r-{i}"
                    ids.append(item_id)
                    text = f'{{"id": "{item_id}", "text": "{SAMPLES[i % 4]} #{i}"}}'
                    yield item_id, text.encode()
                    i += 1

            started = time.monotonic()
            publishing = asyncio.create_task(publish(up.bootstrap, stream(), rate=RATE))
            await asyncio.sleep(3)
            took = {}
            for needle, role in (
                ("deepfake-stream router", "router"),
                ("deepfake-stream worker --backend cpu", "cpu-worker-a"),
                ("deepfake-stream worker --backend cpu", "cpu-worker-b"),
                ("deepfake-stream shim", "shim"),
            ):
                took[role] = round(await _restart(up, needle, role, http_port), 1)
            restarted.set()
            await publishing
            if not await watch.wait(lambda o: all(i in o.verdicts for i in ids), timeout=180):
                missing = [i for i in ids if i not in watch.out.verdicts]
                dead = {key: h.get("dlq.reason") for _, h, key in watch.out.dead}
                pytest.fail(
                    f"{len(missing)} of {len(ids)} items without a verdict after 180 s, e.g. "
                    f"{missing[:5]}; dead-lettered: {[(i, dead.get(i)) for i in missing[:5]]}\n"
                    f"{up.log()[-6000:]}"
                )
            await asyncio.sleep(3)  # late duplicates, if any, arrive now
            elapsed = time.monotonic() - started
        items, lost, dups = accounting(watch.out, ids)
        restarts = up.log().count("restarting in")
    report("sigterm-rolling-restart", items, lost, dups, elapsed, restarts=restarts, back_in_s=took)
    assert restarts >= 4
    assert lost == 0
    assert dups == 0
