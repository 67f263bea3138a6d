"""The liveness view against the real broker: it reads every heartbeat partition by explicit
assignment when the topic exists (no metadata refresh every 2 s), and still sees a worker
when it started before the heartbeat topic existed (it subscribes then)."""

from __future__ import annotations

import asyncio

import pytest

from deepfake_stream.core.kafka import make_producer
from deepfake_stream.core.liveness import Heartbeat, LivenessView, _stop_quietly, now_ms
from deepfake_stream.core.settings import Settings
from deepfake_stream.core.topics import ensure_topics
from tests.conftest import unique_settings

pytestmark = pytest.mark.integration


async def _beat(settings: Settings, backend: str) -> None:
    producer = make_producer(settings, role="test")
    await producer.start()
    try:
        beat = Heartbeat(
            worker_id=f"{backend}-test", backend=backend, models=("m",), ts_ms=now_ms(),
            ttl_ms=60_000,
        )  # fmt: skip
        await producer.send_and_wait(settings.topics.heartbeats, beat.encode())
    finally:
        await producer.stop()


async def _until_alive(view: LivenessView, backend: str) -> None:
    async with asyncio.timeout(20):
        while not view.alive(backend, "m"):
            await view.wait_changed(0.2)


async def test_an_existing_heartbeat_topic_is_assigned_not_subscribed(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap)
    await ensure_topics(settings)
    view = LivenessView(settings)
    consumer = await view._open()
    try:
        partitions = consumer.partitions_for_topic(settings.topics.heartbeats)
        assert partitions and {tp.partition for tp in consumer.assignment()} == partitions
        # Assigned by hand: no metadata refresh every 2 s to find the partitions.
        assert consumer._client._metadata_max_age_ms == 300_000
    finally:
        await _stop_quietly(consumer)
    await view.start()
    try:
        await _beat(settings, "cpu")
        await _until_alive(view, "cpu")
    finally:
        await view.stop()


async def test_a_view_started_before_its_topic_exists_sees_the_first_worker(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap)
    view = LivenessView(settings)
    consumer = await view._open()  # no topic yet: it subscribes and refreshes metadata
    try:
        assert consumer.subscription() == {settings.topics.heartbeats}
        assert consumer._client._metadata_max_age_ms == 2_000
    finally:
        await _stop_quietly(consumer)
    await view.start()
    try:
        await ensure_topics(settings)
        await _beat(settings, "gpu")
        await _until_alive(view, "gpu")
    finally:
        await view.stop()
