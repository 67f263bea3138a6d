"""A stage's FastStream application, in memory (FastStream's ``TestKafkaBroker``): a published
message reaches the stage's delivery rules raw, and only the stage commits."""

from __future__ import annotations

from typing import Any

from aiokafka.structs import TopicPartition
from faststream.kafka import TestKafkaBroker

from deepfake_stream.core.settings import load_settings
from deepfake_stream.core.stage import StageRunner
from deepfake_stream.core.stage_app import StageApp
from tests.unit.test_stage import TOPIC, FakeConsumer, FakeProducer, Handler


def stage_app() -> tuple[StageApp, Handler, FakeConsumer, list[tuple[Any, ...]]]:
    events: list[tuple[Any, ...]] = []
    consumer, handler = FakeConsumer(events), Handler()
    runner = StageRunner(
        consumer=consumer,
        producer=FakeProducer(events),  # type: ignore[arg-type]
        handler=handler,
        topics=[TOPIC],
        max_batch_size=10,
        max_wait_ms=0,
        pipeline=False,
    )
    return StageApp(load_settings(), runner, group_id="g", role="test"), handler, consumer, events


async def test_a_published_message_is_handled_raw_and_committed_by_the_stage() -> None:
    app, handler, consumer, events = stage_app()
    async with TestKafkaBroker(app.broker) as broker:
        await broker.publish(b"\xff not json", topic=TOPIC, key=b"k", partition=0)
    # FastStream parsed nothing: the stage saw the record's bytes and produced its output ...
    assert handler.seen == [(0, 0)]
    assert [e for e in events if e[0] in ("send", "ack")] == [
        ("send", b"\xff not json"),
        ("ack", b"\xff not json"),
    ]
    # ... and committed it after the ack, through its own commit (FastStream acks nothing).
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 1}]
    assert events.index(("ack", b"\xff not json")) < events.index(("commit", consumer.commits[0]))


async def test_a_stopping_stage_handles_no_new_batch() -> None:
    app, handler, consumer, _ = stage_app()
    app._closing = True
    async with TestKafkaBroker(app.broker) as broker:
        await broker.publish(b"late", topic=TOPIC, partition=0)
    assert handler.seen == [] and consumer.commits == []  # re-read by the next owner
