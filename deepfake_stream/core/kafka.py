"""Kafka clients built from settings, with the delivery policy in one place.

Producers always use ``acks="all"``: a stage commits an input offset only after what it
produced is acknowledged by every in-sync replica. Consumers never auto-commit.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from deepfake_stream.core.kafka_records import install as install_tolerant_records
from deepfake_stream.core.settings import Settings


def client_kwargs(settings: Settings, *, role: str = "") -> dict[str, Any]:
    """Connection and security options shared by every client."""
    k = settings.kafka
    kwargs: dict[str, Any] = {
        "bootstrap_servers": k.bootstrap_servers.split(","),
        "security_protocol": k.security_protocol,
        "client_id": f"{k.client_id}-{role}" if role else k.client_id,
    }
    if k.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = k.sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = k.sasl_username
        kwargs["sasl_plain_password"] = (
            k.sasl_password.get_secret_value() if k.sasl_password else None
        )
    if k.security_protocol.endswith("SSL"):
        kwargs["ssl_context"] = create_ssl_context(cafile=k.ssl_cafile)
    return kwargs


def make_producer(settings: Settings, *, role: str = "") -> AIOKafkaProducer:
    k = settings.kafka
    return AIOKafkaProducer(
        **client_kwargs(settings, role=role),
        acks="all",
        # Tansu (the embedded broker) has no idempotent producer; at-least-once plus
        # de-duplication by (id, model_version) downstream covers the retries.
        enable_idempotence=False,
        max_batch_size=k.producer_max_batch_bytes,
        linger_ms=k.producer_linger_ms,
        max_request_size=k.max_request_bytes,
    )


def consumer_options(settings: Settings) -> dict[str, Any]:
    """How every stage consumer fetches and stays in its group (never auto-commits)."""
    k = settings.kafka
    return {
        "auto_offset_reset": "earliest",
        "session_timeout_ms": k.session_timeout_ms,
        "heartbeat_interval_ms": max(1_000, k.session_timeout_ms // 4),
        "max_poll_interval_ms": k.max_poll_interval_ms,
        "fetch_max_bytes": max(52_428_800, k.max_request_bytes),
        "max_partition_fetch_bytes": max(1_048_576, k.max_request_bytes),
        "fetch_max_wait_ms": k.fetch_max_wait_ms,
    }


def make_consumer(
    settings: Settings, *topics: str, group_id: str | None, role: str = "", **extra: Any
) -> AIOKafkaConsumer:
    options: dict[str, Any] = {
        "group_id": group_id,
        "enable_auto_commit": False,
        **consumer_options(settings),
    }
    options.update(extra)
    # A header key that is not UTF-8 must not make getmany() raise (see kafka_records).
    install_tolerant_records()
    cls = AIOKafkaConsumer if settings.kafka.leave_group_on_stop else SilentLeaveConsumer
    return cls(*topics, **client_kwargs(settings, role=role), **options)


class SilentLeaveConsumer(AIOKafkaConsumer):  # type: ignore[misc]  # subclasses Any: aiokafka has no types
    """A consumer that never sends LeaveGroup: when it stops (or overruns
    max_poll_interval_ms) it goes silent and the coordinator expires it after
    session_timeout_ms.

    Why (KAFKA_LEAVE_GROUP_ON_STOP=false, set by `up` for the embedded broker): Tansu keeps a
    member that leaves during a rebalance as the group's leader. Every member that joins later
    is told to wait for that ghost's assignment, SyncGroup fails with REBALANCE_IN_PROGRESS,
    it rejoins, is told the same, for ever: the group never consumes again. CI saw it once
    (a worker SIGTERMed while its replacement was joining: 9,972 items without a verdict
    after 180 s); with LeaveGroup on, the steps of tests/integration/test_group_leave.py
    hang. Expiry by session timeout does not trip it; the price is up to session_timeout_ms
    before a stopped member's partitions move to the others.
    """

    async def start(self) -> None:
        await super().start()
        go_silent_on_leave(self)


def go_silent_on_leave(consumer: AIOKafkaConsumer) -> None:
    """What :class:`SilentLeaveConsumer` does, for a consumer built elsewhere (started)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or not hasattr(coordinator, "_maybe_leave_group"):
        return  # no group (group_id=None): nothing to leave

    async def go_silent() -> None:
        # What aiokafka does after a LeaveGroup, without the request: a later poll
        # rejoins as a new member.
        coordinator.reset_generation()

    coordinator._maybe_leave_group = go_silent


def first_bootstrap(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port or 9092)


async def wait_for_broker(settings: Settings, timeout: float = 30.0) -> None:
    """Wait until a broker answers a Kafka handshake (not just a TCP connect); after
    ``timeout`` s raise BrokerUnavailable, whose one line says what was tried and what to do."""
    from deepfake_stream.core.broker_probe import BrokerUnavailable, probe

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (result := await probe(settings)).state != "kafka":
        if loop.time() > deadline:
            raise BrokerUnavailable(f"{result.message} (waited {timeout:.0f}s)")
        await asyncio.sleep(0.2)
