"""The whole flow on the real broker with the real tiny-tfidf detector."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from datetime import datetime

import pytest

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.routing.service import serve_router
from deepfake_stream.schemas import DLQ_REASONS, Verdict
from tests.conftest import unique_settings
from tests.integration.harness import (
    cli_command,
    collect,
    publish,
    running,
    settings_env,
    wait_live,
)

pytestmark = pytest.mark.integration

VERSION = re.compile(r"^2026\.11\.1\+sha256:[0-9a-f]{12}$")
SAMPLES = [
    "The committee will reconvene next week to review the proposal in detail.",
    "honestly no idea why the printer keeps jamming, tried everything lol",
    "Climate change poses significant challenges to global food security and biodiversity.",
    "Der Zug hatte wieder Verspätung, also bin ich zu Fuß gegangen.",
]


def items(n: int, prefix: str) -> list[dict]:
    return [
        {
            "id": f"{prefix}-{i}",
            "text": f"{SAMPLES[i % 4]} ({i})",
            "tenant": "t1",
            "metadata": {"n": i},
        }
        for i in range(n)
    ]


@pytest.mark.slow  # 1,000 items: 15-30 s
async def test_thousand_items_thousand_contract_verdicts(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap)
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        await wait_live(settings, "cpu", "tiny-tfidf")
        await publish(settings, items(1000, "k"))
        results = await collect(settings, verdicts=1000, timeout=180)
    by_id = results.by_id()
    assert set(by_id) == {f"k-{i}" for i in range(1000)}
    for arrival in results.verdicts:
        v = Verdict.model_validate(arrival.json())
        assert v.model_id == "tiny-tfidf" and VERSION.match(v.model_version)
        assert v.backend == "cpu" and v.fallback_from == [] and v.attempts == 1
        assert v.tenant == "t1" and v.metadata == {"n": int(v.id.split("-")[1])}
        assert v.latency_ms > 0 and v.batch_size >= 1 and v.replay is False
        assert v.scored_at.endswith("Z") and datetime.fromisoformat(v.scored_at)
        # W3C trace-flags: sampled (01), plus the level-2 "random trace id" bit (02) that
        # OpenTelemetry's SDK sets on the trace ids it generates.
        assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[13]$", arrival.headers["traceparent"])
        assert arrival.key == v.id
    assert max(v["batch_size"] for v in by_id.values()) > 1, "micro-batching happened"


MALFORMED: dict[str, tuple[bytes, str]] = {
    "invalid JSON": (b'{"id": "bad-json", "text": ', "invalid_json"),
    "invalid UTF-8": (b'{"id": "bad-utf8", "text": "\xff\xfe"}', "invalid_json"),
    "empty bytes": (b"", "invalid_json"),
    "missing id": (b'{"text": "no id here"}', "invalid_schema"),
    "id of the wrong type": (b'{"id": 12345, "text": "numeric id"}', "invalid_schema"),
    "empty text": (b'{"id": "empty-text", "text": ""}', "invalid_schema"),
    "text over the limit": (
        json.dumps({"id": "too-long", "text": "x" * 2001}).encode(),
        "too_large",
    ),
    "unknown model_id": (
        b'{"id": "unknown-model", "text": "t", "model_id": "nope"}',
        "unknown_model",
    ),
}


async def test_malformed_messages_are_dead_lettered_while_valid_ones_flow(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap, limits__max_text_chars=2000)
    valid = items(40, "v")
    docs: list[dict | bytes] = []
    for i, (raw, _) in enumerate(MALFORMED.values()):
        docs += [*valid[i * 5 : i * 5 + 5], raw]
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        await wait_live(settings, "cpu", "tiny-tfidf")
        await publish(settings, docs)
        results = await collect(settings, verdicts=40, dead=8, timeout=120)
    assert results.verdict_ids() == {d["id"] for d in valid}
    by_value = {a.value: a for a in results.dead}
    assert len(results.dead) == 8
    for kind, (raw, reason) in MALFORMED.items():
        letter = by_value.get(raw)
        assert letter is not None, f"{kind}: no dead letter with the original bytes"
        h = letter.headers
        assert h["dlq.reason"] == reason, kind
        assert h["dlq.reason"] in DLQ_REASONS
        assert h["dlq.stage"] == "router"
        assert h["dlq.original.topic"] == settings.topics.input
        assert int(h["dlq.original.partition"]) >= 0 and int(h["dlq.original.offset"]) >= 0
        assert h["dlq.attempts"] == "0"
        assert h["dlq.error.class"] and 0 < len(h["dlq.error.message"]) <= 1000
        assert "Traceback" not in h["dlq.error.message"]
        datetime.fromisoformat(h["dlq.failed_at"])


@pytest.mark.slow  # worker processes: 40-85 s
async def test_sigkill_of_a_cpu_worker_mid_stream_loses_nothing(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap, worker__max_batch_size=32)
    env = settings_env(settings)
    command = cli_command("worker", "--backend", "cpu")
    n = 3000
    async with running(lambda stop: serve_router(settings, stop=stop)):
        worker = subprocess.Popen(command, env=env)
        try:
            await wait_live(settings, "cpu", "tiny-tfidf")
            await publish(settings, items(n, "s"))
            partial = await collect(settings, verdicts=300, timeout=120)
            assert len(partial.verdicts) >= 300
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            worker = subprocess.Popen(command, env=env)
            results = await collect(settings, verdicts=n, timeout=240, settle=1.0)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    ids = [a.json()["id"] for a in results.verdicts]
    assert set(ids) == {f"s-{i}" for i in range(n)}, f"lost {n - len(set(ids))} items"
    print(f"SIGKILL test: {n} items, {len(ids) - len(set(ids))} duplicate verdicts")


@pytest.mark.slow  # worker processes: 25-50 s
async def test_sigterm_drains_and_commits_so_a_restart_duplicates_nothing(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap, worker__max_batch_size=32)
    env = settings_env(settings)
    command = cli_command("worker", "--backend", "cpu")
    n = 3000
    async with running(lambda stop: serve_router(settings, stop=stop)):
        worker = subprocess.Popen(command, env=env)
        try:
            await wait_live(settings, "cpu", "tiny-tfidf")
            await publish(settings, items(n, "d"))
            await collect(settings, verdicts=300, timeout=120)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0, "a drained worker exits 0"
            worker = subprocess.Popen(command, env=env)
            results = await collect(settings, verdicts=n, timeout=240, settle=2.0)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    ids = [a.json()["id"] for a in results.verdicts]
    assert set(ids) == {f"d-{i}" for i in range(n)}
    assert len(ids) == n, f"{len(ids) - n} duplicates after a clean SIGTERM"


async def test_a_rebalance_mid_stream_hands_partitions_over_without_duplicates(
    kafka_bootstrap: str,
) -> None:
    """A second worker joining mid-stream triggers a rebalance; the first drains its batch
    and commits before its partitions move, so nothing is scored twice or lost."""
    settings = unique_settings(kafka_bootstrap, worker__max_batch_size=32)
    n = 3000
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        await wait_live(settings, "cpu", "tiny-tfidf")
        await publish(settings, items(n, "r"))
        await collect(settings, verdicts=300, timeout=120)
        async with running(lambda stop: serve_worker(settings, "cpu", stop=stop)):
            results = await collect(settings, verdicts=n, timeout=240, settle=2.0)
    ids = [a.json()["id"] for a in results.verdicts]
    assert set(ids) == {f"r-{i}" for i in range(n)}
    assert len(ids) == n, f"{len(ids) - n} duplicates across the rebalance"
