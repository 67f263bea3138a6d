"""A stage's FastStream application, in memory (FastStream's ``TestKafkaBroker``): a published
message reaches the stage's delivery rules raw, and only the stage commits."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.structs import TopicPartition
from faststream.kafka import TestKafkaBroker
from faststream.kafka.security import parse_security

from deepfake_stream.core.kafka import client_kwargs
from deepfake_stream.core.settings import load_settings
from deepfake_stream.core.stage import StageRunner
from deepfake_stream.core.stage_app import StageApp, broker_security
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
    await app.stop_handling()
    async with TestKafkaBroker(app.broker) as broker:
        await broker.publish(b"late", topic=TOPIC, partition=0)
    assert handler.seen == [] and consumer.commits == []  # re-read by the next owner


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("PLAINTEXT", None),
        ("SSL", None),
        ("SASL_PLAINTEXT", None),  # no mechanism set: PLAIN, as every other client
        ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
        ("SASL_SSL", "SCRAM-SHA-512"),
        ("SASL_SSL", "PLAIN"),
    ],
)
def test_faststream_connects_with_the_security_every_other_client_uses(
    protocol: str, mechanism: str | None
) -> None:
    settings = load_settings(
        {
            ("kafka", "security_protocol"): protocol,
            ("kafka", "sasl_mechanism"): mechanism,
            ("kafka", "sasl_username"): "svc",
            ("kafka", "sasl_password"): "s3cret",
        }
    )
    # What FastStream hands aiokafka, against what core.kafka hands our own producers. With
    # no security FastStream adds nothing and aiokafka's default (PLAINTEXT) applies.
    theirs = {"security_protocol": "PLAINTEXT", **parse_security(broker_security(settings))}
    ours = client_kwargs(settings)
    for key in (
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
    ):
        assert theirs.get(key) == ours.get(key), key
    assert (theirs.get("ssl_context") is not None) == protocol.endswith("SSL")
