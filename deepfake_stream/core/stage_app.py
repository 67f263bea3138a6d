"""A stage as a FastStream application: FastStream's broker, subscriber and fetch loop; the
stage's delivery semantics (``core.stage.StageRunner.step``) as its handler.

FastStream builds the consumer (the stage's group, ``AckPolicy.MANUAL``: FastStream never
commits) and calls the handler with each fetched batch. What its loop does not give by
itself plugs in around it:

- the batch is topped up for ``max_wait_ms`` and handled by ``StageRunner.step``: outputs
  are produced with ``acks="all"`` and the input offsets committed only after every ack;
  failures are retried, split and dead-lettered; a partial batch is held (back-pressure);
- the same rebalance listener drains the batch in flight before a partition moves;
- FastStream calls no handler while nothing arrives, so a ticker does what an empty fetch
  must still do: finish the pipelined batch whose acks are in flight, give held items their
  retry, and lengthen the broker's fetch wait once idle;
- records reach the handler raw (a parser that decodes nothing): FastStream's own parser
  would log and skip, uncommitted, a record whose headers it cannot decode, and a dead
  letter must carry the original bytes and headers (FastStream's publishers take text
  headers only), so outputs go through the stage's own ``acks="all"`` producer;
- FastStream's batch fetch sleeps ``batch_timeout_ms`` after every empty ``getmany``: short,
  an idle stage wakes dozens of times a second (``bench idle``: 11.3% of a core for `up`
  against 7.1% with the stage's own fetch, 2026-12-05); long, an item arriving in the sleep
  waits it out. The subscriber's fetch is therefore the stage's: one ``getmany`` that waits
  up to ``poll_ms`` for records and returns as soon as they come (:meth:`StageApp.fetch`);
- stopping: no new batch is handled, the last one's acks and commit are awaited, then
  FastStream stops the subscriber (its consumer leaves silently on the embedded broker,
  see ``core.kafka.SilentLeaveConsumer``).

Tracing and metrics stay the stage's own rather than FastStream's middlewares: a verdict's
span continues its own item's trace (each item carries its ``traceparent``), where the
middleware would open one span per fetched batch, and the metrics count what the stage
decides (items routed, held, dead-lettered), not what FastStream fetched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

from aiokafka import AIOKafkaConsumer
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy, Context, FastStream
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from deepfake_stream.core.kafka import consumer_options, go_silent_on_leave
from deepfake_stream.core.kafka_records import install as install_tolerant_records
from deepfake_stream.core.settings import Settings
from deepfake_stream.core.stage import StageRunner

log = logging.getLogger(__name__)

IDLE_TICK_S = 0.25
"""How often the ticker looks for work no fetched batch brings (see the module docstring): a
pipelined batch's commit, a held item's retry (the router held for 0.5 s between retries
before), the idle fetch wait. Each tick wakes an idle stage, so not more often."""

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def broker_security(settings: Settings) -> BaseSecurity | None:
    """``core.kafka.client_kwargs``' security, in FastStream's terms."""
    k = settings.kafka
    ssl = k.security_protocol.endswith("SSL")
    context = create_ssl_context(cafile=k.ssl_cafile) if ssl else None
    if k.security_protocol.startswith("SASL"):
        password = k.sasl_password.get_secret_value() if k.sasl_password else ""
        sasl = _SASL[k.sasl_mechanism or "PLAIN"]
        return sasl(k.sasl_username or "", password, ssl_context=context, use_ssl=ssl)
    if ssl:
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return None


def stage_broker(settings: Settings, role: str, graceful_timeout: float) -> KafkaBroker:
    k = settings.kafka
    return KafkaBroker(
        k.bootstrap_servers.split(","),
        client_id=f"{k.client_id}-{role}",
        security=broker_security(settings),
        graceful_timeout=graceful_timeout,
        log_level=logging.DEBUG,  # no line per batch: the stage logs what matters
    )


async def _raw(records: Any) -> StreamMessage[Any]:
    return StreamMessage(raw_message=records, body=b"")


async def _undecoded(message: StreamMessage[Any]) -> None:
    return None


class StageApp:
    """One stage's FastStream application: its broker, its batch subscriber, its handler."""

    def __init__(self, settings: Settings, runner: StageRunner, *, group_id: str, role: str):
        self.settings = settings
        self.runner = runner
        self.group_id = group_id
        self.role = role
        self.broker = stage_broker(settings, runner.stage, graceful_timeout=runner.batch_timeout_s)
        self.subscriber = self.broker.subscriber(
            *runner.topics,
            batch=True,
            group_id=group_id,
            max_records=runner.max_batch_size,
            batch_timeout_ms=runner.poll_ms,  # unused: see fetch()
            ack_policy=AckPolicy.MANUAL,
            listener=runner.listener(),
            parser=_raw,
            decoder=_undecoded,
            **consumer_options(settings),
        )
        # FastStream's fetch sleeps after an empty poll (module docstring): use the stage's.
        self.subscriber.get_msg = self.fetch
        self.subscriber(self.handle)
        self.app = FastStream(self.broker, logger=log)
        self._turn = asyncio.Lock()  # one step at a time: a fetched batch's or the ticker's
        self._closing = False
        self._seen = runner.generation()
        self._last = time.monotonic()

    async def fetch(self, consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord, ...]:
        """The subscriber's fetch: records as soon as they come, waiting ``poll_ms`` at most;
        nothing (FastStream's loop then checks whether it still runs) only after that."""
        got = await consumer.getmany(
            timeout_ms=self.runner.poll_ms, max_records=self.runner.max_batch_size
        )
        return tuple(r for rs in got.values() for r in rs)

    async def handle(self, message: Annotated[StreamMessage[Any], Context("message")]) -> None:
        """FastStream's handler: one fetched batch, raw, topped up and stepped."""
        async with self._turn:
            if self._closing:  # not handled, not committed: its partitions' next owner reads it
                return
            runner = self.runner
            if runner.consumer is None:  # FastStream fetched before serve() saw it started
                runner.consumer = self.subscriber.consumer
            # A rebalance since the last batch may have come before this fetch: step then
            # re-reads from the committed offsets instead of scoring these twice.
            generation = self._seen
            try:
                records = await runner.fill(list(message.raw_message))
                await runner.step(records, generation)
            finally:
                self._seen = runner.generation()
                self._last = time.monotonic()

    async def tick(self) -> None:
        """What an empty fetch must still do, since FastStream then calls no handler."""
        if self._turn.locked() or time.monotonic() - self._last < IDLE_TICK_S:
            return
        async with self._turn:
            await self.runner.step([], self.runner.generation())
            self._seen = self.runner.generation()

    async def serve(self, *, count: int | None = None, timeout: float | None = None) -> int:
        """Run until the runner's stop event, ``count`` records or ``timeout`` seconds;
        returns the records processed."""
        runner = self.runner
        install_tolerant_records()  # a header key that is not UTF-8 must not stop getmany()
        await self.app.start()
        try:
            runner.consumer = self.subscriber.consumer
            if not self.settings.kafka.leave_group_on_stop:
                go_silent_on_leave(runner.consumer)
            log.info("%s consuming %s (group %s)", self.role, list(runner.topics), self.group_id)
            started = time.monotonic()
            while not runner.stop.is_set():
                await asyncio.sleep(IDLE_TICK_S)  # a stop waits one tick at most
                if runner.stop.is_set():
                    break
                if timeout is not None and time.monotonic() - started > timeout:
                    break
                if count is not None and runner.processed + runner.in_flight() >= count:
                    async with self._turn:
                        await runner.finish_in_flight()  # the last batch counts once committed
                    if runner.processed >= count:
                        break
                await self.tick()
        finally:
            await self.stop_handling()
            await self.app.stop()
        return runner.processed

    async def stop_handling(self) -> None:
        """Settle the batch in flight (its acks, then its commit) and handle no batch after
        it: one FastStream fetched before stopping is left uncommitted for the partitions'
        next owner."""
        async with self._turn:
            self._closing = True
            await self.runner.finish_in_flight()


async def serve_stage(
    settings: Settings,
    runner: StageRunner,
    *,
    group_id: str,
    role: str,
    count: int | None = None,
    timeout: float | None = None,
) -> int:
    """Run ``runner`` as a FastStream application (see :class:`StageApp`)."""
    app = StageApp(settings, runner, group_id=group_id, role=role)
    return await app.serve(count=count, timeout=timeout)
