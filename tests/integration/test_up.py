"""`deepfake-stream up` as a user runs it, fed by an outside aiokafka client."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from aiokafka import AIOKafkaProducer

from deepfake_stream.core.settings import WorkerSettings
from deepfake_stream.embedded_broker import free_port
from deepfake_stream.schemas import Verdict
from deepfake_stream.supervisor import console_command
from tests.conftest import unique_settings
from tests.integration.harness import settings_env
from tests.integration.test_pipeline import MALFORMED, SAMPLES
from tests.system import Outcome, deepfake_up, percentile, read_outputs, wait_for_verdict_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # `up` as a subprocess: 20-60 s


async def test_up_scores_2000_texts_and_dead_letters_8_malformed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with deepfake_up(tmp_path, MAX_TEXT_CHARS="2000") as up:
        # Children show their standalone command lines in `ps` (once they have exec'd).
        cpu_workers = WorkerSettings().cpu_workers  # the default, 2 (one per core measured)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            router = up.children("deepfake-stream router")
            workers = up.children("deepfake-stream worker --backend cpu")
            if len(router) == 1 and len(workers) == cpu_workers:
                break
            time.sleep(0.2)
        assert len(router) == 1 and len(workers) == cpu_workers, up.log()

        await wait_for_verdict_of(up.bootstrap, "probe-0")
        producer = AIOKafkaProducer(
            bootstrap_servers=up.bootstrap, acks="all", max_batch_size=1 << 20, linger_ms=5
        )
        await producer.start()
        started = time.monotonic()
        futures = []
        for i in range(2000):
            doc = {"id": f"u-{i}", "text": f"{SAMPLES[i % 4]} #{i}"}
            futures.append(
                await producer.send("detect.in", json.dumps(doc).encode(), key=doc["id"].encode())
            )
            if i % 250 == 0:
                raw = list(MALFORMED.values())[i // 250][0]
                futures.append(await producer.send("detect.in", raw))
        for f in futures:
            await f
        await producer.stop()
        out = Outcome()
        await read_outputs(
            up.bootstrap,
            out,
            lambda o: sum(k.startswith("u-") for k in o.verdicts) >= 2000 and len(o.dead) >= 8,
            timeout=180,
        )
        elapsed = time.monotonic() - started

        ids = {k for k in out.verdicts if k.startswith("u-")}
        assert ids == {f"u-{i}" for i in range(2000)}
        for k in ids:
            Verdict.model_validate(out.verdicts[k][0])
        reasons = sorted(h["dlq.reason"] for _, h, _ in out.dead)
        assert reasons == sorted(r for _, r in MALFORMED.values())
        lat = [out.verdicts[k][0]["latency_ms"] for k in ids]
        print(
            f"up: 2000 items in {elapsed:.1f}s ({2000 / elapsed:.0f} items/s end to end), "
            f"latency p50 {percentile(lat, 50):.0f} ms p99 {percentile(lat, 99):.0f} ms"
        )

        up.process.send_signal(signal.SIGTERM)
        assert up.process.wait(60) == 0
        assert up.children() == [], "every child stopped with up"
    assert "stopping" in up.log()


def test_up_stops_and_says_why_when_a_service_is_misconfigured(kafka_bootstrap: str) -> None:
    """The shim refuses 0.0.0.0 without API keys: a restart cannot help, so `up` stops
    everything and exits 2 with the shim's reason instead of retrying it for ever."""
    env = settings_env(unique_settings(kafka_bootstrap))
    env.pop("DETECT_API_KEYS", None)
    env.update(HTTP_HOST="0.0.0.0", HTTP_PORT=str(free_port()), WORKER_CPU_WORKERS="0")
    started = time.monotonic()
    proc = subprocess.run(
        [*console_command(), "up", "--timeout", "120"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "up stopped: shim cannot start" in last and "DETECT_API_KEYS" in last
    assert "restarting in" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 120
