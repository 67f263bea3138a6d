"""Redis killed mid-run: nothing is lost and every verdict (score, label) is the one a run
without Redis gives. The Redis here is the test's own redis-server on its own free port
(never the shared instance): killing it touches nobody else."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from deepfake_stream.embedded_broker import free_port
from tests.chaos.streams import Watcher, accounting, healthy, publish, report
from tests.system import Outcome, deepfake_up, wait_for_verdict_of

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow]

N = 4_000
DISTINCT = 500  # texts repeat: the cache answers part of the stream before Redis dies
RATE = 300


@pytest.fixture
def own_redis(tmp_path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:  # type: ignore[no-untyped-def]
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs Debian's redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            assert time.monotonic() < deadline, "our redis-server did not start"
            time.sleep(0.1)
    client.close()
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def _run(tmp_path, items, *, redis_url: str | None, kill=None) -> tuple[Outcome, float]:  # type: ignore[no-untyped-def]
    env = {"WORKER_CPU_WORKERS": "2"}
    if redis_url:
        env |= {"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": f"chaos-{uuid.uuid4().hex[:8]}"}
    tmp_path.mkdir(exist_ok=True)
    with deepfake_up(tmp_path, **env) as up:
        await wait_for_verdict_of(up.bootstrap, "probe-0")
        if redis_url:
            assert "redis connected" in up.log()
        ids = [i for i, _ in items]
        async with Watcher(up.bootstrap) as watch:
            started = time.monotonic()
            publishing = asyncio.create_task(publish(up.bootstrap, items, rate=RATE))
            if kill:
                await watch.wait(lambda o: sum(i in o.verdicts for i in ids) >= N // 3, 120)
                kill()
            await publishing
            assert await watch.wait(lambda o: all(i in o.verdicts for i in ids), 180)
            await asyncio.sleep(2)
            elapsed = time.monotonic() - started
        if kill:
            assert "redis" in up.log().lower()
    return watch.out, elapsed


async def test_redis_killed_mid_run_loses_nothing_and_changes_no_verdict(
    tmp_path,
    own_redis,  # type: ignore[no-untyped-def]
) -> None:
    proc, url = own_redis
    items = healthy("x", N, distinct=DISTINCT)
    ids = [i for i, _ in items]
    keys_at_kill: list[int] = []

    def kill() -> None:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        keys_at_kill.append(client.dbsize())
        client.close()
        proc.send_signal(signal.SIGKILL)

    with_redis, elapsed = await _run(tmp_path / "with", items, redis_url=url, kill=kill)
    assert proc.wait(5) == -signal.SIGKILL
    without, _ = await _run(tmp_path / "without", items, redis_url=None)

    items_n, lost, dups = accounting(with_redis, ids)
    cache_hits = sum(
        1 for i in ids if i in with_redis.verdicts and with_redis.verdicts[i][0]["batch_size"] == 1
    )
    # Same label, same score: exactly, or within the 1e-9 to which tiny-tfidf's batch scorer
    # and its text-by-text path agree (a cached score may come from either).
    gaps = {
        i: abs(with_redis.verdicts[i][0]["score"] - without.verdicts[i][0]["score"]) for i in ids
    }
    differ = [
        i
        for i in ids
        if gaps[i] > 1e-9 or with_redis.verdicts[i][0]["label"] != without.verdicts[i][0]["label"]
    ]
    report(
        "redis-killed",
        items_n,
        lost,
        dups,
        elapsed,
        redis_keys_at_kill=keys_at_kill[0],
        batch_size_1_verdicts=cache_hits,
        verdicts_differing_from_a_run_without_redis=len(differ),
        largest_score_gap=f"{max(gaps.values()):.1e}",
    )
    assert keys_at_kill[0] > 0, "Redis was in use before it was killed"
    assert lost == 0
    assert accounting(without, ids)[1] == 0
    assert not differ, f"{len(differ)} verdicts differ, e.g. " + "; ".join(
        f"{with_redis.verdicts[i][0]} != {without.verdicts[i][0]}" for i in differ[:2]
    )
