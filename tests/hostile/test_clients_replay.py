"""``replay`` against hostile history and careless arguments: a stored item no codec can
re-encode is dead-lettered (the replay goes on), and a selection that names nothing or
something else than asked is one clear line with exit code 2, never a traceback."""

from __future__ import annotations

import hashlib

import pytest

from deepfake_stream import cli
from deepfake_stream.core.kafka import make_producer
from deepfake_stream.core.topics import ensure_topics
from deepfake_stream.core.tracing import CORRELATION_HEADER
from deepfake_stream.producers.replay import ReplayOptions, replay
from deepfake_stream.producers.scan import Selection, SelectionError
from tests.conftest import unique_settings
from tests.integration.harness import collect, publish
from tests.integration.test_replay import _registry


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--offsets", " "], "expected PARTITION:FROM-TO"),
        (["--offsets", ""], "expected PARTITION:FROM-TO"),
        (["--offsets", "0:0-5,0:10-20"], "partition 0 is given twice"),
        (["--offsets", "0:0-5", "--partition", "0"], "partition 0 is in --offsets"),
        (["--offsets=-1:0-5"], "PARTITION >= 0"),
        (["--since", "2026-01-02", "--until", "2026-01-01"], "must be before --until"),
        (["--since", "1000", "--until", "1000"], "must be before --until"),
    ],
)
def test_bad_selection_is_one_line_and_exit_2(
    argv: list[str], problem: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # 127.0.0.1:9 (discard): refused before any connection is tried.
    code = cli.main(["replay", "--kafka-bootstrap-servers", "127.0.0.1:9", *argv])
    assert code == 2
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and problem in lines[0], lines


@pytest.mark.integration
async def test_unknown_partition_is_one_line_and_exit_2(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = unique_settings(kafka_bootstrap)
    with pytest.raises(SelectionError, match="has no partition"):
        await replay(settings, Selection(offsets={999: (0, None)}), ReplayOptions(progress=False))
    assert issubclass(SelectionError, cli.DetectError)  # cli.main: logged as one line, exit 2


@pytest.mark.integration
async def test_a_stored_item_with_a_lone_surrogate_is_dead_lettered_not_fatal(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap)
    registry = _registry({"m": 0.5})
    await publish(
        settings,
        [
            {"id": "before", "text": "a valid item"},
            b'{"id": "bad-tenant", "text": "hello", "tenant": "\\ud800"}',
            b'{"id": "bad-meta", "text": "hello", "metadata": {"k": "\\udfff"}}',
            b'{"id": "nan", "text": "hello", "metadata": {"k": NaN}}',
            b'{"id": "blank", "text": "  \\n\\t "}',
            {"id": "after", "text": "another valid item"},
        ],
    )
    summary = await replay(settings, Selection(), ReplayOptions(progress=False), registry=registry)
    assert summary.read == 6 and summary.rescored == 2 and summary.dead_lettered == 4
    results = await collect(settings, verdicts=2, dead=4, timeout=30)
    assert results.verdict_ids() == {"before", "after"}
    sha = {a.json()["id"]: a.json()["text_sha256"] for a in results.verdicts}
    assert sha["before"] == hashlib.sha256(b"a valid item").hexdigest()
    reasons = sorted(a.headers["dlq.reason"] for a in results.dead)
    assert reasons == ["invalid_json", "invalid_json", "invalid_json", "invalid_schema"]
    assert {a.headers["dlq.stage"] for a in results.dead} == {"replay"}


@pytest.mark.integration
async def test_a_replayed_shim_item_answers_no_request(kafka_bootstrap: str) -> None:
    """A ?via=stream item's correlation id stays with its first verdict: the replay's verdict
    continues the item's trace but carries no correlation id."""
    settings = unique_settings(kafka_bootstrap)
    await ensure_topics(settings)
    producer = make_producer(settings, role="test")
    await producer.start()
    try:
        headers = [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"),
                   (CORRELATION_HEADER, b"c-old")]  # fmt: skip
        raw = b'{"id": "from-shim", "text": "scored once through the stream"}'
        await producer.send_and_wait(settings.topics.input, raw, key=b"from-shim", headers=headers)
    finally:
        await producer.stop()
    summary = await replay(
        settings, Selection(), ReplayOptions(progress=False), registry=_registry({"m": 0.5})
    )
    assert summary.rescored == 1
    [verdict] = (await collect(settings, verdicts=1, timeout=30)).verdicts
    assert CORRELATION_HEADER not in verdict.headers
    assert verdict.headers["traceparent"].split("-")[1] == "1" * 32
