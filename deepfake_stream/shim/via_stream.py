"""``?via=stream``: request-reply over the live pipeline.

The shim publishes the item to ``detect.in`` (key = its item id, acks=all) with a fresh
correlation id in the ``deepfake.correlation_id`` header, which the router and workers carry
on to every message they produce for it (routed item, verdict, dead letter). One reader task
serves every waiting request: it reads the verdict and dead-letter topics without a consumer
group (so it never takes partitions from moderation systems, and never commits), from their
ends as of start-up, and resolves a dict of futures keyed by correlation id. Replies are
never matched by the client's item id: another request (another API key, or the same id
sent twice at once) can never receive this one's verdict. A dead letter for the request
answers 502 with its ``dlq.reason``; no answer within ``HTTP_STREAM_TIMEOUT_S`` answers 504.

While no request waits, the reader reads nothing: its partitions are paused, so it sends the
broker no fetches (an idle shim polled both topics every ``KAFKA_FETCH_IDLE_WAIT_MS``, and a
busy pipeline made it parse every verdict only to drop it). The first request after a pause
moves the reader to the topics' ends before it publishes, so its reply cannot be missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from deepfake_stream.core.headers import parse_headers
from deepfake_stream.core.kafka import make_consumer, make_producer
from deepfake_stream.core.reader import topic_partitions
from deepfake_stream.core.settings import Settings
from deepfake_stream.core.topics import ensure_topics
from deepfake_stream.core.tracing import CORRELATION_HEADER, trace_headers
from deepfake_stream.schemas import InputItem, Verdict
from deepfake_stream.shim.errors import ApiError

log = logging.getLogger(__name__)


class StreamLink:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[str, tuple[str, asyncio.Future[Verdict]]] = {}
        """Correlation id -> (item id, the waiting request's future)."""
        self._tps: list[TopicPartition] = []
        self._resuming = asyncio.Lock()
        self._wake = asyncio.Event()
        """Set when a request has resumed the paused reader."""
        self.ready = False

    async def start(self) -> None:
        """Connect; raises when the broker does not answer (the caller retries)."""
        await ensure_topics(self.settings)
        topics = self.settings.topics
        consumer = make_consumer(self.settings, group_id=None, role="shim-reply")
        producer = make_producer(self.settings, role="shim")
        try:
            await consumer.start()
            tps = [
                TopicPartition(topic, p)
                for topic in (topics.verdicts, topics.dlq)
                for p in sorted(await topic_partitions(consumer, topic))
            ]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:  # resolve the end offsets now: nothing published later is missed
                await consumer.position(tp)
            await producer.start()
        except BaseException:
            await consumer.stop()
            await producer.stop()
            raise
        self._consumer, self._producer, self._tps = consumer, producer, tps
        self._reader = asyncio.create_task(self._read(), name="shim-reply-reader")
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._reader:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        for _, fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ApiError(503, "stream_unavailable", "the shim is stopping"))
        if self._consumer:
            await self._consumer.stop()
        if self._producer:
            await self._producer.stop()

    async def request(self, item: InputItem, trace: dict[str, str], timeout: float) -> Verdict:
        """Publish ``item`` to detect.in and return the pipeline's verdict for it."""
        if not self.ready or self._producer is None:
            raise ApiError(503, "stream_unavailable", "the shim is not connected to the broker")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout  # the whole request: resume, publish, reply
        fut: asyncio.Future[Verdict] = loop.create_future()
        correlation = uuid.uuid4().hex  # ours, whatever the client's headers said
        self._waiting[correlation] = (item.id, fut)  # first: the reader stays resumed now
        try:
            try:
                await asyncio.wait_for(self._resume(), timeout)
            except TimeoutError:
                raise ApiError(
                    503,
                    "stream_unavailable",
                    f"the broker did not answer within {timeout:g}s (HTTP_STREAM_TIMEOUT_S); "
                    "retry in a moment",
                ) from None
            await self._producer.send_and_wait(
                self.settings.topics.input,
                item.model_dump_json().encode(),
                key=item.id.encode(),
                headers=trace_headers({**trace, CORRELATION_HEADER: correlation}),
            )
            try:
                return await asyncio.wait_for(fut, max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise ApiError(
                    504,
                    "stream_timeout",
                    f"no verdict for {item.id} on {self.settings.topics.verdicts} within "
                    f"{timeout:g}s (HTTP_STREAM_TIMEOUT_S); is a worker running?",
                ) from None
        finally:
            self._waiting.pop(correlation, None)

    async def _resume(self) -> None:
        """Move a paused reader to the ends of its topics and resume it; returns once every
        position is resolved, so a reply published after this is read."""
        assert self._consumer is not None
        async with self._resuming:  # concurrent first requests: one of them resumes
            if not self._consumer.paused():  # the reader is reading: nothing to move
                return
            await self._consumer.seek_to_end(*self._tps)
            for tp in self._tps:
                await self._consumer.position(tp)
            self._consumer.resume(*self._tps)
            self._wake.set()

    async def _read(self) -> None:
        assert self._consumer is not None
        dlq = self.settings.topics.dlq
        while True:
            if not self._waiting and not self._resuming.locked():
                self._consumer.pause(*self._tps)  # no fetches until a request resumes it
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                batches = await self._consumer.getmany(timeout_ms=500)
            except Exception as exc:  # the broker went away: keep trying, requests time out
                log.warning("reading verdicts failed: %s", exc)
                await asyncio.sleep(1)
                continue
            for tp, records in batches.items():
                for record in records:
                    self._answer(record, is_dead_letter=tp.topic == dlq)

    def _answer(self, record: ConsumerRecord, *, is_dead_letter: bool) -> None:
        """Resolve the request this record answers, if any is waiting for it."""
        headers = parse_headers(record.headers or ())
        waiting = self._waiting.get(headers.get(CORRELATION_HEADER, ""))
        if waiting is None or waiting[1].done():
            return
        item_id, fut = waiting
        if is_dead_letter:
            fut.set_exception(
                ApiError(
                    502,
                    "dead_lettered",
                    {
                        "reason": headers.get("dlq.reason"),
                        "stage": headers.get("dlq.stage"),
                        "message": headers.get("dlq.error.message"),
                    },
                )
            )
            return
        try:
            verdict = Verdict.model_validate(json.loads(record.value or b""))
        except ValueError:
            return
        if verdict.id == item_id:  # defence in depth: a forged header never answers
            fut.set_result(verdict)
