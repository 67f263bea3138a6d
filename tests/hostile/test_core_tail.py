"""`tail` (verdicts and --dlq, history and new-only) reads a record whose header key is not
UTF-8 like any other: printed, with the records around it, and no traceback."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from deepfake_stream.core.topics import ensure_topics
from tests.conftest import unique_settings
from tests.hostile.core_raw import RawHeaderKey, produce_raw
from tests.integration.harness import cli_command, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # the CLI as a subprocess: 10-20 s

BAD_KEY = RawHeaderKey(b"\xff\xfe\xc3(")


def _records(prefix: str) -> list[tuple[bytes, bytes, list]]:
    def doc(i: str) -> bytes:
        return json.dumps({"id": i, "label": "human", "score": 0.1}).encode()

    return [
        (f"{prefix}-before".encode(), doc(f"{prefix}-before"), []),
        (f"{prefix}-odd".encode(), doc(f"{prefix}-odd"), [(BAD_KEY, b"v"), ("dlq.reason", b"x")]),
        (f"{prefix}-after".encode(), doc(f"{prefix}-after"), []),
    ]


def _tail(settings, *args: str) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        cli_command("tail", "--json", "--timeout", "60", "--count", "3", *args),
        env=settings_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> list[dict]:
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "UnicodeDecodeError" not in err, err
    return [json.loads(line) for line in out.splitlines()]


async def test_tail_prints_a_record_whose_header_key_is_not_utf8(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap)
    await ensure_topics(settings)
    await produce_raw(settings, _records("v"), topic=settings.topics.verdicts)
    await produce_raw(settings, _records("d"), topic=settings.topics.dlq)

    # History: verdicts and dead letters, the odd record between two ordinary ones.
    got = _finish(await asyncio.to_thread(_tail, settings, "--from-beginning"))
    assert [v["id"] for v in got] == ["v-before", "v-odd", "v-after"]
    got = _finish(await asyncio.to_thread(_tail, settings, "--from-beginning", "--dlq"))
    assert [d["key"] for d in got] == ["d-before", "d-odd", "d-after"]
    odd = got[1]["headers"]
    assert odd["dlq.reason"] == "x"
    assert [k for k in odd if k != "dlq.reason"] == ["\ufffd\ufffd\ufffd("]  # bytes replaced

    # New only (the default): started first, then the records arrive.
    proc = await asyncio.to_thread(_tail, settings)
    try:
        assert proc.stderr is not None
        while "reading " not in (line := await asyncio.to_thread(proc.stderr.readline)):
            assert line, "tail exited before it was reading"
        await produce_raw(settings, _records("n"), topic=settings.topics.verdicts)
        got = await asyncio.to_thread(_finish, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [v["id"] for v in got] == ["n-before", "n-odd", "n-after"]
