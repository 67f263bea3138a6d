"""`deepfake-stream replay` on the real broker: time ranges, offsets, the DLQ, --only-changed,
--rate, the version pin, and the command's progress bar and summary."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.core.errors import ConfigError
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.producers.replay import ReplayOptions, replay
from deepfake_stream.producers.scan import Selection, parse_offsets
from deepfake_stream.routing.service import serve_router
from deepfake_stream.schemas import Verdict
from tests.conftest import unique_settings
from tests.doubles import EchoDetector, register_doubles
from tests.integration.harness import (
    cli_command,
    collect,
    publish,
    running,
    settings_env,
    wait_live,
)

pytestmark = pytest.mark.integration
QUIET = {"progress": False}


def _registry(models: dict[str, float], default: str | None = None):  # type: ignore[no-untyped-def]
    register_doubles()
    doc = {
        "models": {
            m: {"kind": "echo", "size": "tiny", "version": "r2", "threshold": t}
            for m, t in models.items()
        }
    }
    return registry_from_dict(doc, default_model=default or next(iter(models)), source="test")


def _echo_score(text: str) -> float:
    return hashlib.sha256(text.encode()).digest()[0] / 255


def _items(prefix: str, n: int, **extra: object) -> list[dict]:
    return [{"id": f"{prefix}-{i}", "text": f"{prefix} text number {i}", **extra} for i in range(n)]


async def test_time_range_rescores_exactly_the_items_in_it(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap)
    registry = _registry({"m": 0.5})
    await publish(settings, _items("before", 10))
    await asyncio.sleep(0.3)
    since = int(time.time() * 1000)
    await publish(settings, _items("inside", 15, tenant="t9", metadata={"k": 1}))
    until = int(time.time() * 1000) + 1
    await asyncio.sleep(0.3)
    await publish(settings, _items("after", 10))

    summary = await replay(
        settings,
        Selection(since_ms=since, until_ms=until),
        ReplayOptions(**QUIET),
        registry=registry,
    )
    assert summary.in_range == 35 and summary.read == 15
    assert summary.rescored == summary.published == 15 and summary.dead_lettered == 0
    results = await collect(settings, verdicts=15, settle=1.0, timeout=30)
    by_id = results.by_id()
    assert set(by_id) == {f"inside-{i}" for i in range(15)}
    assert len(results.verdicts) == 15
    for arrival in results.verdicts:
        v = Verdict.model_validate(arrival.json())
        assert v.replay is True
        assert v.model_version == "r2+sha256:" + "0" * 12
        assert v.score == pytest.approx(_echo_score(f"inside text number {v.id.split('-')[1]}"))
        assert v.tenant == "t9" and v.metadata == {"k": 1}
        assert arrival.headers["deepfake.replay"] == "true"
        assert arrival.headers["traceparent"].startswith("00-")


async def test_offset_range_and_bad_items_are_dead_lettered_with_stage_replay(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap)
    registry = _registry({"m": 0.5})
    docs: list[dict | bytes] = [
        *_items("o", 6),
        b"{not json",
        {"id": "u", "text": "x", "model_id": "nope"},
    ]
    await publish(settings, docs)
    # The embedded broker's topics have several partitions: replay each partition in full.
    from deepfake_stream.core.reader import read_topic

    seen = [
        a async for a in read_topic(settings, settings.topics.input, from_beginning=True, count=8)
    ]
    spec = ",".join(f"{p}:0-" for p in sorted({a.partition for a in seen}))
    summary = await replay(
        settings, Selection(offsets=parse_offsets(spec)), ReplayOptions(**QUIET), registry=registry
    )
    assert summary.read == 8 and summary.rescored == 6 and summary.dead_lettered == 2
    results = await collect(settings, verdicts=6, dead=2, timeout=30)
    assert results.verdict_ids() == {f"o-{i}" for i in range(6)}
    reasons = sorted(a.headers["dlq.reason"] for a in results.dead)
    assert reasons == ["invalid_json", "unknown_model"]
    assert {a.headers["dlq.stage"] for a in results.dead} == {"replay"}
    assert {a.headers["dlq.original.topic"] for a in results.dead} == {settings.topics.input}
    assert b"{not json" in [a.value for a in results.dead]  # original bytes, unchanged

    # A single partition's range, TO inclusive.
    first = seen[0]
    one = await replay(
        settings,
        Selection(offsets={first.partition: (first.offset, first.offset)}),
        ReplayOptions(output_topic=f"shadow-{settings.topics.verdicts}", **QUIET),
        registry=registry,
    )
    assert one.read == 1


@pytest.mark.slow  # two pipeline start-ups on the embedded broker: ~25 s
async def test_dlq_replay_reinjects_dead_letters_once_the_registry_is_fixed(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap)
    before = _registry({"m": 0.5})
    after = _registry({"m": 0.5, "late": 0.5})
    docs = [*_items("late", 5, model_id="late"), *_items("ok", 3)]

    def pipeline(registry):  # type: ignore[no-untyped-def]
        detectors = {m: EchoDetector(c.spec()) for m, c in registry.models.items()}
        return (
            lambda stop: serve_router(settings, registry=registry, stop=stop),
            lambda stop: serve_worker(
                settings, "cpu", registry=registry, detectors=detectors, stop=stop
            ),
        )

    async with running(*pipeline(before)):
        await wait_live(settings, "cpu", "m")
        await publish(settings, docs)
        first = await collect(settings, verdicts=3, dead=5, timeout=60)
    assert {a.headers["dlq.reason"] for a in first.dead} == {"unknown_model"}

    async with running(*pipeline(after)):
        await wait_live(settings, "cpu", "late")
        summary = await replay(
            settings,
            Selection(reasons={"unknown_model"}),
            ReplayOptions(**QUIET),
            dlq=True,
        )
        assert summary.mode == "dlq" and summary.read == 5 and summary.reinjected == 5
        results = await collect(settings, verdicts=8, timeout=60)
    by_id = results.by_id()
    assert set(by_id) == {d["id"] for d in docs}
    for i in range(5):
        assert by_id[f"late-{i}"]["replay"] is True
        assert by_id[f"late-{i}"]["model_id"] == "late"
    assert all(by_id[f"ok-{i}"]["replay"] is False for i in range(3))


async def test_only_changed_publishes_only_label_changes(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap)
    docs = _items("c", 40)
    await publish(settings, docs)
    strict, lenient = _registry({"m": 0.5}), _registry({"m": 0.3})
    first = await replay(
        settings, Selection(), ReplayOptions(only_changed=True, **QUIET), registry=strict
    )
    assert first.published == 40 and first.new == 40 and first.changed == 0

    second = await replay(
        settings, Selection(), ReplayOptions(only_changed=True, **QUIET), registry=lenient
    )
    flipped = {d["id"] for d in docs if 0.3 <= _echo_score(d["text"]) < 0.5}
    assert flipped, "the sample must contain scores between the two thresholds"
    assert second.rescored == 40 and second.new == 0
    assert second.changed == second.published == len(flipped)
    # 40 distinct ids: wait for them all, then 1 s more for the re-published ones.
    results = await collect(settings, verdicts=40, settle=1.0, timeout=30)
    assert len(results.verdicts) == 40 + len(flipped)
    republished = [a.json() for a in results.verdicts if a.json()["threshold"] == 0.3]
    assert {v["id"] for v in republished} == flipped
    assert all(v["label"] == "ai" for v in republished)

    third = await replay(
        settings, Selection(), ReplayOptions(only_changed=True, **QUIET), registry=lenient
    )
    assert third.published == 0 and third.changed == 0  # nothing changed since


async def test_rate_bounds_throughput(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap)
    await publish(settings, _items("r", 30))
    started = time.monotonic()
    summary = await replay(
        settings, Selection(), ReplayOptions(rate=20, **QUIET), registry=_registry({"m": 0.5})
    )
    took = time.monotonic() - started
    assert summary.read == 30
    assert took >= 29 / 20 * 0.95, took  # item k never starts before k / rate seconds
    assert summary.rate <= 20 * 1.05


async def test_pinned_version_must_match_the_loaded_model(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap)
    await publish(settings, _items("v", 2))
    with pytest.raises(ConfigError, match="does not match"):
        await replay(
            settings,
            Selection(),
            ReplayOptions(model="m", model_version="r1", **QUIET),
            registry=_registry({"m": 0.5}),
        )
    ok = await replay(
        settings,
        Selection(),
        ReplayOptions(model="m", model_version="r2", count=1, **QUIET),
        registry=_registry({"m": 0.5}),
    )
    assert ok.read == 1 and ok.model_versions == {"m": "r2+sha256:" + "0" * 12}


async def test_replay_command_prints_progress_and_summary(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The real command with the shipped tiny-tfidf model, as an operator runs it."""
    settings = unique_settings(kafka_bootstrap)
    await publish(settings, _items("cli", 25))
    path = tmp_path / "ids.txt"
    path.write_text("# a comment\ncli-3\ncli-7\n\ncli-11\n")
    proc = await asyncio.to_thread(
        subprocess.run,
        cli_command("replay", "--ids", str(path), "--json"),
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["read"] == 3 and summary["rescored"] == 3 and summary["in_range"] == 25
    assert summary["model_versions"]["tiny-tfidf"].startswith("2026.11.1+sha256:")
    assert "replay summary (rescore): items read 3 of 25" in proc.stdout
    assert "replay: 100%" in proc.stderr and "25/25" in proc.stderr  # tqdm's bar
    results = await collect(settings, verdicts=3, timeout=30)
    assert results.verdict_ids() == {"cli-3", "cli-7", "cli-11"}

    nothing = await asyncio.to_thread(
        subprocess.run,
        cli_command("replay"),
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nothing.returncode == 2 and "choose what to replay" in nothing.stderr
