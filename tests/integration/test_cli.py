"""produce and tail as a user runs them, and the README's Python example."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.core.topics import ensure_topics
from deepfake_stream.routing.service import serve_router
from tests.conftest import unique_settings
from tests.integration.harness import (
    cli_command,
    collect,
    running,
    settings_env,
    wait_live,
)

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.slow  # the CLI as subprocesses: 10-20 s
async def test_produce_file_then_tail_prints_the_verdicts(kafka_bootstrap: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = unique_settings(kafka_bootstrap)
    env = settings_env(settings)
    data = tmp_path / "items.jsonl"
    lines = [
        json.dumps({"id": f"p-{i}", "text": f"text number {i}", "label": 1}) for i in range(30)
    ]
    lines.insert(5, '{"id": "broken", "text": ')  # reported and skipped, not sent
    data.write_text("\n".join(lines) + "\n")
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        await wait_live(settings, "cpu", "tiny-tfidf")
        produced = subprocess.run(
            [*cli_command("produce", str(data), "--rate", "500")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert produced.returncode == 1, produced.stderr  # one line skipped
        assert "line 6 skipped: invalid_json" in produced.stderr
        assert "published 30 items" in produced.stderr
        await collect(settings, verdicts=30)
        tailed = subprocess.run(
            [
                *cli_command(
                    "tail", "--from-beginning", "--json", "--count", "30", "--timeout", "60"
                )
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert tailed.returncode == 0, tailed.stderr
    verdicts = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert {v["id"] for v in verdicts} == {f"p-{i}" for i in range(30)}


async def test_readme_python_example_publishes_an_item(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README shows a Python example"
    code = blocks[0].replace('"127.0.0.1:9092"', f'"{kafka_bootstrap}"')
    env = settings_env(settings)
    env.pop("KAFKA_BOOTSTRAP_SERVERS")  # the example names its broker itself
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=README.parent,
    )
    assert done.returncode == 0, done.stderr
    from deepfake_stream.core.reader import read_topic

    got = [
        a
        async for a in read_topic(
            settings, settings.topics.input, from_beginning=True, count=1, timeout=20
        )
    ]
    assert got and json.loads(got[0].value)["id"] == "post-123"


async def _publish_verdicts(settings, ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Several verdicts in one producer batch on one partition: the shape a worker writes,
    and the one the embedded broker's ListOffsets answers wrongly (see seek_to_true_end)."""
    from deepfake_stream.core.kafka import make_producer

    producer = make_producer(settings, role="test")
    await producer.start()
    try:
        sent = [
            await producer.send(
                settings.topics.verdicts,
                json.dumps({"id": i, "label": "ai", "score": 0.9}).encode(),
                key=i.encode(),
                partition=0,
            )
            for i in ids
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def _start_tail(settings, *args: str) -> tuple[subprocess.Popen[str], list[str]]:  # type: ignore[no-untyped-def]
    """`tail --json` as a user starts it; returns once it says it is reading."""
    proc = subprocess.Popen(
        cli_command("tail", "--json", "--timeout", "60", *args),
        env=settings_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:  # blocks until tail is positioned (or exits)
        seen.append(line)
        if "reading " in line:
            break
    assert any("reading " in s for s in seen), "".join(seen)
    return proc, seen


async def test_tail_by_default_prints_only_verdicts_that_arrive_after_it_starts(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap)
    await ensure_topics(settings)
    await _publish_verdicts(settings, ["old-1", "old-2", "old-3", "old-4"])
    proc, _ = await asyncio.to_thread(_start_tail, settings, "--count", "2")
    try:
        await _publish_verdicts(settings, ["new-1", "new-2"])
        out, err = await asyncio.to_thread(proc.communicate, timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["new-1", "new-2"]


async def test_tail_from_beginning_prints_the_history_first(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap)
    await ensure_topics(settings)
    await _publish_verdicts(settings, ["old-1", "old-2", "old-3"])
    proc, seen = await asyncio.to_thread(_start_tail, settings, "--from-beginning", "--count", "4")
    try:
        await _publish_verdicts(settings, ["new-1"])
        out, err = await asyncio.to_thread(proc.communicate, timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "from the oldest" in "".join(seen)
    assert [json.loads(line)["id"] for line in out.splitlines()] == [
        "old-1",
        "old-2",
        "old-3",
        "new-1",
    ]
