"""A member stopping during a rebalance must not leave its group unable to assign partitions.

On the embedded broker (Tansu) a member that sends LeaveGroup while a rebalance runs stays
the group's leader: whoever joins next waits for that ghost's assignment for ever (see
``SilentLeaveConsumer``). With KAFKA_LEAVE_GROUP_ON_STOP=false, as `up` sets for Tansu,
stopped members are expired after the session timeout instead and the next member gets
every partition. With LeaveGroup on (KAFKA_LEAVE_GROUP_ON_STOP=true), the same steps hang
on Tansu: c is never assigned anything (checked by hand on 2026-12-04; not a test, since it
asserts the broker's bug).
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from deepfake_stream.core.kafka import SilentLeaveConsumer, make_consumer, make_producer
from deepfake_stream.core.topics import ensure_topics
from tests.conftest import unique_settings
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # three joins of ~5 s on Tansu


async def _poll(consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
    # Polling keeps a member in its group (aiokafka only rejoins from getmany).
    while not stop.is_set():
        await consumer.getmany(timeout_ms=100)


async def _stop(consumer: AIOKafkaConsumer, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await task
    await consumer.stop()


async def test_a_leader_stopping_while_a_member_joins_leaves_a_group_that_assigns(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap, kafka__leave_group_on_stop=False)
    await ensure_topics(settings)
    topic = settings.topics.backend("cpu")
    producer = make_producer(settings, role="test")
    await producer.start()
    try:
        partitions = len(await producer.partitions_for(topic))
    finally:
        await producer.stop()
    assert partitions > 1
    group = f"{settings.kafka.group_prefix}.leave"

    async def member(name: str) -> tuple[AIOKafkaConsumer, asyncio.Event, asyncio.Task[None]]:
        consumer = make_consumer(settings, group_id=group, role=name)
        assert isinstance(consumer, SilentLeaveConsumer)
        await consumer.start()
        consumer.subscribe([topic])
        stop = asyncio.Event()
        return consumer, stop, asyncio.create_task(_poll(consumer, stop))

    a, b = await member("a"), await member("b")
    await until(
        lambda: a[0].assignment() and b[0].assignment(),
        timeout=60,
        what="a and b to share the partitions",
    )
    # b stops, so a is alone in a generation after the first: aiokafka sends no LeaveGroup
    # from Tansu's generation 0, so the scenario needs a later one to mean anything.
    await _stop(*b)
    await until(
        lambda: len(a[0].assignment()) == partitions, timeout=60, what="a to take every partition"
    )
    c = await member("c")  # c's join starts a rebalance ...
    await asyncio.sleep(1)
    await _stop(*a)  # ... and the leader stops while it runs
    consumer, stop, task = c
    try:
        await until(
            lambda: len(consumer.assignment()) == partitions,
            timeout=60,
            what="the next member to be assigned every partition",
        )
    finally:
        await _stop(consumer, stop, task)
