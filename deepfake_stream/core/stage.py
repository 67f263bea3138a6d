"""The consume → process → produce → commit loop every stage shares.

Delivery is at-least-once: a batch's offsets are committed only after every message produced
for it was acknowledged by the broker (producers use ``acks="all"``). When producing fails,
the batch is re-read from its first offsets, never skipped. A rebalance waits for the batch
in flight (the revoke callback takes the same lock), so a partition changes hands only
between batches and its new owner starts at the committed offset.

Failures are bounded. A Kafka error that says the broker is unreachable or busy is retried
with back-off for as long as it lasts (the items are fine; dead-lettering them would need
the same broker). Any other failure (the handler raising, an output the broker can never
take, a batch running past ``batch_timeout_s``) counts against the batch: after
``max_attempts`` the batch is split in halves, each retried the same way, down to the one
record that keeps failing, which is dead-lettered (``model_error``) through the handler's
``poisoned``. While a batch keeps failing the stage reports itself unhealthy (a worker then
stops advertising its models, so the router routes around it) until a batch succeeds.

Where it runs: every service runs its stage in FastStream's fetch loop
(``core.stage_app.serve_stage``: FastStream's broker, batch subscriber and consumer, with
``AckPolicy.MANUAL``), which hands each fetched batch to :meth:`StageRunner.step`. FastStream
commits nothing itself: its ack would commit the consumer's whole position, past items this
stage holds and before the acknowledgements of a pipelined batch, so the commits stay here.
:meth:`StageRunner.run` is the same ``step`` behind a plain ``getmany`` loop, for the unit
tests that drive a stage over in-memory doubles.

History: a first FastStream router (2026-12-04) passed the hostile-input tests but not the
SIGTERM rolling-restart chaos test (three runs). The cause was the embedded broker, not
FastStream (a member leaving during a rebalance stays the group's ghost leader; see
``deepfake_stream.core.kafka.SilentLeaveConsumer``, which FastStream's consumer now gets
too). Retried with that fix on 2026-12-05, the FastStream router passed it twice (16,224 and
17,203 items, none lost or scored twice); every stage then moved to FastStream's loop and
the unchanged chaos suite passed (11 of 11, twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import (
    IllegalStateError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)
from aiokafka.structs import ConsumerRecord, TopicPartition

from deepfake_stream.core.metrics import observe_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None
    """None: the producer's partitioner picks it from the key."""


@dataclass(slots=True)
class BatchResult:
    out: list[Outgoing] = field(default_factory=list)
    hold: dict[TopicPartition, int] = field(default_factory=dict)
    """Per partition, the first offset NOT handled: it is re-read later (back-pressure)."""
    commit: dict[TopicPartition, int] = field(default_factory=dict)
    """Per partition, the offset to commit at most (items held in the handler's memory), or
    to commit up to where this batch read nothing of it (held items resolved)."""
    after_ack: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Awaited once every message of ``out`` is acknowledged, before the offsets are committed
    (e.g. recording verdicts as published). A failing callback is logged, never retried."""


class Handler(Protocol):
    async def handle(self, records: Sequence[ConsumerRecord]) -> BatchResult: ...

    def poisoned(self, record: ConsumerRecord, error: BaseException) -> Outgoing:
        """The dead letter (``model_error``) of a record that failed every attempt."""
        ...


class _BatchFailed(Exception):
    """A batch failed for a reason that may lie in its records (counted, then split)."""


class _PreviousFailed(Exception):
    """The previous (pipelined) batch's acks or commit failed: it was never committed."""

    def __init__(self, records: list[ConsumerRecord], why: str) -> None:
        super().__init__(f"the previous batch of {len(records)} failed ({why})")
        self.records = records


def _transient(exc: BaseException) -> bool:
    """The broker is unreachable or busy: retry without counting it against the records.
    An output too large for the broker is the records' fault, whatever Kafka calls it."""
    if isinstance(exc, MessageSizeTooLargeError | RecordTooLargeError):
        return False
    return isinstance(exc, KafkaError)


class _DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]  # subclasses Any: aiokafka has no types
    def __init__(
        self,
        lock: asyncio.Lock,
        on_revoked: Callable[[list[TopicPartition]], None] | None = None,
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._lock = lock
        self._on_revoked = on_revoked
        self._settle = settle
        self.generation = 0
        """Bumped on every revocation and assignment: records fetched under an earlier one
        are stale (see ``StageRunner.run``)."""

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:  # the batch in flight finishes and commits first
            if self._settle is not None:  # ... and so does the one whose acks are in flight
                await self._settle()
            self.generation += 1
            if self._on_revoked is not None:  # e.g. the router forgets its held items there
                self._on_revoked(revoked)
            if revoked:
                log.info(
                    "partitions revoked: %s", sorted(f"{t.topic}/{t.partition}" for t in revoked)
                )

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.generation += 1
        if assigned:
            log.info(
                "partitions assigned: %s", sorted(f"{t.topic}/{t.partition}" for t in assigned)
            )


@dataclass(kw_only=True)
class StageRunner:
    producer: AIOKafkaProducer
    handler: Handler
    topics: Sequence[str]
    max_batch_size: int
    max_wait_ms: int
    consumer: AIOKafkaConsumer = None
    """Set once started: FastStream's (``core.stage_app``) or, in unit tests, a double."""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    poll_ms: int = 500
    processed: int = 0
    stage: str = "stage"
    """Names this stage in metrics (router, cpu, gpu, modal)."""
    max_attempts: int = 3
    """Failed attempts of a batch (or a half of one) before it is split
    (WORKER_MAX_BATCH_ATTEMPTS)."""
    batch_timeout_s: float = 600.0
    """Longest one batch may run before it counts as failed (WORKER_BATCH_TIMEOUT_S)."""
    committed_timeout_s: float = 30.0
    """Longest the committed offset of a partition is asked for after a rebalance; past it
    the stage re-reads from the first record it dropped (a duplicate at worst)."""
    healthy: bool = True
    """False from a batch's failure until a batch succeeds (see the module docstring)."""
    dead_lettered: int = 0
    """Records dead-lettered after failing every attempt."""
    pipeline: bool = True
    """Overlap batches (WORKER_PIPELINE): batch N+1 is fetched and handled while batch N's
    outputs are being acknowledged; N is committed (in offset order) before N+1 is."""
    backlog_batch_size: int | None = None
    """Largest batch while a backlog waits (WORKER_BACKLOG_BATCH_SIZE): a full batch doubles
    the next one's limit up to this, a partly filled one halves it back towards
    ``max_batch_size``, so a trickle keeps small batches (latency) and a backlog pays the
    per-batch costs (round trips, commit, spans) less often. None: ``max_batch_size`` always."""
    _batch_limit: int = 0
    fetch_idle_wait_ms: int | None = None
    """Broker fetch wait once idle for ``fetch_idle_after_ms`` (KAFKA_FETCH_IDLE_WAIT_MS);
    None: the consumer's own fetch_max_wait_ms always. Busy again: the consumer's own."""
    fetch_idle_after_ms: int = 1_000
    _idle_since: float | None = None
    _busy_wait_ms: int | None = None
    _failing: tuple[frozenset[tuple[TopicPartition, int]], int] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _listener: _DrainOnRevoke | None = None
    _inflight: tuple[list[ConsumerRecord], asyncio.Task[None]] | None = None
    """The previous batch, handled and its outputs sent, whose acks and commit are pending."""
    _sync_next: bool = False
    """The previous deferred finish failed for a reason that may lie in its records: the
    re-read batch runs unpipelined, so the failure is counted (and split) as usual."""
    _backoff: float = 0.1
    """Seconds to wait after a failed batch: doubles per failure up to 5, reset by a success."""
    _floor: dict[TopicPartition, int] = field(default_factory=dict)
    """First offsets of a previous batch that failed to finish in this loop turn: any later
    rewind in the same turn seeks no further than these (it would skip that batch)."""

    def listener(self) -> ConsumerRebalanceListener:
        """The rebalance listener of this stage's consumer: a revocation waits for the batch
        in flight and its acks (see the module docstring)."""
        self._listener = _DrainOnRevoke(
            self._lock, getattr(self.handler, "revoked", None), self._settle_quietly
        )
        return self._listener

    def subscribe(self) -> None:
        self.consumer.subscribe(list(self.topics), listener=self.listener())

    def generation(self) -> int:
        """Bumped by every rebalance: records fetched under an earlier one are stale."""
        return self._listener.generation if self._listener else 0

    async def collect(self) -> list[ConsumerRecord]:
        """One micro-batch: wait for the first record, then at most ``max_wait_ms`` to fill."""
        limit = self._batch_limit or self.max_batch_size
        got = await self.consumer.getmany(timeout_ms=self.poll_ms, max_records=limit)
        return await self.fill([r for rs in got.values() for r in rs])

    async def fill(self, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        """Top up the first records of a batch for at most ``max_wait_ms``.

        ``getmany`` returns at once when records are already fetched, so a busy topic fills a
        batch without waiting; only a trickle waits, and never longer than ``max_wait_ms``.
        """
        if not records:
            return records
        limit = self._batch_limit or self.max_batch_size
        deadline = time.monotonic() + self.max_wait_ms / 1000
        while len(records) < limit:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            got = await self.consumer.getmany(timeout_ms=left_ms, max_records=limit - len(records))
            if not got:
                break
            records.extend(r for rs in got.values() for r in rs)
        if self.backlog_batch_size and self.backlog_batch_size > self.max_batch_size:
            if len(records) >= limit:  # a backlog: the next batch may be larger
                self._batch_limit = min(2 * limit, self.backlog_batch_size)
            else:
                self._batch_limit = max(self.max_batch_size, limit // 2)
        return records

    async def run(self, *, count: int | None = None, timeout: float | None = None) -> int:
        """Process until stopped, ``count`` records, or ``timeout`` seconds; returns records."""
        started = time.monotonic()
        while not self.stop.is_set():
            if count is not None and self.processed + self.in_flight() >= count:
                await self.finish_in_flight()  # the last batch counts once it is committed
                if self.processed >= count:
                    break
            if timeout is not None and time.monotonic() - started > timeout:
                break
            generation = self.generation()
            records = await self.collect()
            await self.step(records, generation)
        await self.finish_in_flight()  # stopping: the last batch's acks and commit first
        return self.processed

    def in_flight(self) -> int:
        """Records of the pipelined batch whose acks and commit are pending."""
        return len(self._inflight[0]) if self._inflight else 0

    async def finish_in_flight(self) -> None:
        """Wait for the pipelined batch's acks and commit (re-read if they failed)."""
        async with self._lock:
            await self._settle_quietly()

    async def step(self, records: list[ConsumerRecord], generation: int) -> None:
        """Handle one fetched batch (``generation``: the listener's when it was fetched)."""
        self._floor = {}
        self._adapt_fetch_wait(bool(records))
        if not records and self._inflight is not None:
            async with self._lock:  # idle: finish the batch whose acks are in flight
                await self._settle_quietly()
        if not records and not self._handler_pending():
            return
        async with self._lock:
            if self.generation() != generation:
                # A rebalance ran while the batch was being collected (outside the lock):
                # the new assignment restarts every partition at its committed offset, so
                # handling these records would score them twice, even on partitions that
                # came back to this consumer. Drop them and re-read from the committed
                # offsets, which also re-reads what was fetched under the new assignment.
                await self._drop_stale(records)
                return
            # A rebalance may have taken partitions while the batch was being filled:
            # their records belong to the new owner now (scoring them here would only
            # duplicate verdicts, since their offsets can no longer be committed).
            assigned = self.consumer.assignment()
            records = [r for r in records if TopicPartition(r.topic, r.partition) in assigned]
            if not records and not self._handler_pending():
                return
            keepalive = asyncio.create_task(self._stay_in_group())
            try:
                result = await self._attempt(records, pipelined=self.pipeline)
            finally:
                keepalive.cancel()
                await asyncio.gather(keepalive, return_exceptions=True)
            if result is None:  # failed: rewound, to be re-read after the back-off
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, 5.0)
                return
            self._backoff = 0.1
        if result.hold:
            await asyncio.sleep(0.5)  # back-pressure: the held items are re-read shortly

    def _adapt_fetch_wait(self, got: bool) -> None:
        """Short broker fetch waits while records flow, long ones once idle.

        Every idle consumer costs a fetch request per wait, on itself and on the broker
        (`up` idled at 37% of a core with 20 ms waits). aiokafka reads the wait afresh for
        every fetch request, so changing it takes effect from the next one."""
        fetcher = getattr(self.consumer, "_fetcher", None)
        if self.fetch_idle_wait_ms is None or fetcher is None:
            return
        if self._busy_wait_ms is None:
            self._busy_wait_ms = getattr(fetcher, "_fetch_max_wait_ms", None)
            if not isinstance(self._busy_wait_ms, int):
                self.fetch_idle_wait_ms = None  # not an aiokafka fetcher: leave it alone
                return
        now = time.monotonic()
        if got:
            self._idle_since = None
            fetcher._fetch_max_wait_ms = self._busy_wait_ms
        elif self._idle_since is None:
            self._idle_since = now
        elif (now - self._idle_since) * 1000 >= self.fetch_idle_after_ms:
            fetcher._fetch_max_wait_ms = max(self._busy_wait_ms, self.fetch_idle_wait_ms)

    def _handler_pending(self) -> bool:
        """The handler keeps items to retry (the router's held items): call it even when no
        record arrived, so they are routed or expire without waiting for new input."""
        pending = getattr(self.handler, "pending", None)
        return bool(pending and pending())

    async def _attempt(
        self, records: list[ConsumerRecord], *, pipelined: bool = False
    ) -> BatchResult | None:
        """Process ``records``; None when it failed (everything not committed is rewound)."""
        pipelined = pipelined and not self._sync_next
        self._sync_next = False
        try:
            result = await self._bounded(records, pipelined=pipelined)
        except _PreviousFailed as exc:
            # The batch before this one could not be finished: both are re-read from the
            # earlier batch's first offsets (this one was handled, not committed).
            log.error("batch of %d not committed: %s; re-reading it", len(records), exc)
            self._rewind(records)  # no further than the earlier batch (_floor)
            return None
        except Exception as exc:
            # The previous batch is finished (or rewound) before this one is counted, split
            # or dead-lettered: no commit of this batch may come before it.
            await self._settle_quietly()
            if _transient(exc):
                log.error(
                    "batch of %d failed (%s: %s); re-reading it",
                    len(records),
                    type(exc).__name__,
                    exc,
                )
                self._rewind(records)
                return None
            key = frozenset(_first_offsets(records).items())
            failures = self._failing[1] + 1 if self._failing and self._failing[0] == key else 1
            self._failing = (key, failures)
            self.healthy = False
            cause = exc.__cause__ if isinstance(exc, _BatchFailed) else exc
            log.error(
                "batch of %d failed (%s: %s), attempt %d of %d",
                len(records),
                type(cause).__name__,
                cause,
                failures,
                self.max_attempts,
            )
            if failures < self.max_attempts:
                self._rewind(records)
                return None
            self._failing = None
            done: dict[TopicPartition, int] = {}
            if not await self._isolate(records, cause or exc, done):
                self._rewind([r for r in records if r.offset >= done.get(_tp(r), 0)])
                return None
            result = BatchResult()
        self._failing = None
        self.healthy = True
        return result

    async def _bounded(
        self, records: list[ConsumerRecord], *, pipelined: bool = False
    ) -> BatchResult:
        """``_process`` under the batch ceiling; a failure that may lie in the records is
        raised as :class:`_BatchFailed`, a transient one as itself."""
        try:
            async with asyncio.timeout(self.batch_timeout_s):
                return await self._process(records, pipelined=pipelined)
        except _PreviousFailed:
            raise
        except TimeoutError:
            hung = TimeoutError(f"batch ran past {self.batch_timeout_s:g}s")
            raise _BatchFailed(str(hung)) from hung
        except Exception as exc:
            if _transient(exc):
                raise
            raise _BatchFailed(str(exc)) from exc

    async def _isolate(
        self,
        records: list[ConsumerRecord],
        error: BaseException,
        done: dict[TopicPartition, int],
    ) -> bool:
        """Split a batch that failed every attempt until its culprit(s) are alone, and
        dead-letter those. The halves run in order, so each partition's commits only move
        forward; ``done`` collects, per partition, the next offset not yet handled. False
        when it stopped early (a transient failure, or a hold): the caller re-reads the rest.
        """
        if not records:  # only the handler's own pending work failed: nothing to split
            return False
        if len(records) == 1:
            if not await self._dead_letter(records[0], error):
                return False
            done[_tp(records[0])] = records[0].offset + 1
            return True
        mid = len(records) // 2
        for half in (records[:mid], records[mid:]):
            for _ in range(self.max_attempts):
                try:
                    result = await self._bounded(half)
                except _BatchFailed as exc:
                    error = exc.__cause__ or exc
                    continue
                except Exception:  # transient
                    return False
                for r in half:
                    done[_tp(r)] = max(done.get(_tp(r), 0), r.offset + 1)
                done.update(result.hold)
                if result.hold:
                    return False
                break
            else:
                if not await self._isolate(half, error, done):
                    return False
        return True

    async def _dead_letter(self, record: ConsumerRecord, error: BaseException) -> bool:
        poisoned = getattr(self.handler, "poisoned", None)
        if poisoned is None:  # a handler that cannot dead-letter: keep re-reading it
            return False
        letter: Outgoing = poisoned(record, error)
        log.error(
            "offset %d of %s/%d failed %d attempts (%s: %s); dead-lettered as model_error",
            record.offset,
            record.topic,
            record.partition,
            self.max_attempts,
            type(error).__name__,
            error,
        )
        try:
            ack = await self.producer.send(
                letter.topic, letter.value, key=letter.key, headers=letter.headers
            )
            await ack
            if _tp(record) in self.consumer.assignment():
                await self.consumer.commit({_tp(record): record.offset + 1})
        except Exception as exc:
            log.error("dead-lettering failed (%s: %s); re-reading", type(exc).__name__, exc)
            return False
        self.processed += 1
        self.dead_lettered += 1
        return True

    async def _stay_in_group(self) -> None:
        """Keep a slow batch's consumer in its group.

        aiokafka leaves the group when ``getmany`` has not been called for
        ``max_poll_interval_ms`` (heartbeats alone do not count), so a batch slower than that
        could never commit: it is re-read after the rebalance, is slow again, and so on
        forever. Once a batch has run for a third of the interval, every assigned partition
        is paused and ``getmany`` is called in a loop: paused partitions return nothing and
        keep their positions (prefetched records are dropped and fetched again later).
        Normal batches end long before, so they never pause anything. It ends with its
        batch, which ``batch_timeout_s`` bounds: a hung batch is not kept alive for ever.
        """
        interval = getattr(self.consumer, "_max_poll_interval_ms", None)
        interval_s = (interval if isinstance(interval, int) else 300_000) / 1000
        await asyncio.sleep(interval_s / 3)
        self.consumer.pause(*self.consumer.assignment())
        log.warning(
            "batch running for %.0fs: polling with partitions paused so the consumer stays in "
            "its group (max_poll_interval_ms %d)",
            interval_s / 3,
            interval_s * 1000,
        )
        try:
            while True:
                self.consumer.pause(*self.consumer.assignment())
                got = await self.consumer.getmany(timeout_ms=int(interval_s * 1000 / 10))
                for tp, rs in got.items():  # none expected; never skip one if it happens
                    if rs:
                        self.consumer.seek(tp, rs[0].offset)
        except Exception as exc:  # a coordination error: the main loop's next poll sees it
            log.debug("keep-alive poll stopped (%s: %s)", type(exc).__name__, exc)
        finally:
            self.consumer.resume(*self.consumer.paused())

    async def _process(
        self, records: list[ConsumerRecord], *, pipelined: bool = False
    ) -> BatchResult:
        """Handle ``records`` and send their outputs; then await the acks and commit, or
        (``pipelined``) leave that to a task that runs while the next batch is fetched and
        handled. Either way the previous batch is finished first: commits stay in order."""
        if not pipelined:
            await self._settle()
        result = await self.handler.handle(records)
        pending = [
            await self.producer.send(
                o.topic, o.value, key=o.key, headers=o.headers, partition=o.partition
            )
            for o in result.out
        ]
        if pipelined:
            await self._settle()  # raises _PreviousFailed: this batch is re-read with it
        if pipelined and not result.hold:
            # A hold seeks back: the next batch must not be fetched before it, so it is
            # finished here. Without one, the acks travel while the next batch is scored.
            task = asyncio.create_task(self._finish_bounded(records, result, pending))
            self._inflight = (records, task)
            return result
        await self._finish(records, result, pending)
        return result

    async def _finish_bounded(
        self, records: list[ConsumerRecord], result: BatchResult, pending: list[Any]
    ) -> None:
        async with asyncio.timeout(self.batch_timeout_s):
            await self._finish(records, result, pending)

    async def _finish(
        self, records: list[ConsumerRecord], result: BatchResult, pending: list[Any]
    ) -> None:
        if pending:
            await asyncio.gather(*pending)  # every output acknowledged (acks=all) ...
        for callback in result.after_ack:
            try:
                await callback()
            except Exception as exc:  # the outputs are acked: committing is still right
                log.warning("after-ack callback failed (%s: %s)", type(exc).__name__, exc)
        offsets = self._commit_offsets(records, result.hold)
        for tp, limit in result.commit.items():
            offsets[tp] = min(offsets.get(tp, limit), limit)
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if offsets:
            await self.consumer.commit(offsets)  # ... before its input offset is committed
        observe_batch(self.stage, self.consumer, records, result.hold, result.out)
        for tp, offset in result.hold.items():
            if tp in assigned:
                self.consumer.seek(tp, offset)
        self.processed += sum(
            1
            for r in records
            if r.offset < result.hold.get(TopicPartition(r.topic, r.partition), 1 << 62)
        )

    async def _settle(self) -> None:
        """Wait for the previous batch's acks and commit; :class:`_PreviousFailed` (its
        records with it, to be re-read) when they failed."""
        if self._inflight is None:
            return
        records, task = self._inflight
        self._inflight = None
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():  # we were cancelled, not the finish: let it end first
                await asyncio.gather(task, return_exceptions=True)
                raise
            self._rewind_unfinished(records)
            raise _PreviousFailed(records, "its finish was cancelled") from None
        except Exception as exc:
            # Transient or not, it is re-read; a failure that may lie in the records is
            # then counted by an unpipelined attempt (bounded like any other).
            self._sync_next = not _transient(exc)
            self._rewind_unfinished(records)
            raise _PreviousFailed(records, f"{type(exc).__name__}: {exc}") from exc

    async def _settle_quietly(self) -> None:
        """``_settle`` for the revoke callback, an idle loop and stopping: a failed previous
        batch is rewound here (its partitions may be about to change hands)."""
        try:
            await self._settle()
        except _PreviousFailed as exc:  # already rewound by _settle
            log.error("batch of %d not committed: %s; re-reading it", len(exc.records), exc)

    def _rewind_unfinished(self, records: list[ConsumerRecord]) -> None:
        for tp, offset in _first_offsets(records).items():
            self._floor[tp] = min(self._floor.get(tp, offset), offset)
        self._rewind(records)

    @staticmethod
    def _commit_offsets(
        records: Sequence[ConsumerRecord], hold: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        for tp, first_unhandled in hold.items():
            offsets[tp] = first_unhandled
        return offsets

    async def _drop_stale(self, records: Sequence[ConsumerRecord]) -> None:
        first = _first_offsets(records)
        assigned = self.consumer.assignment()
        log.info(
            "dropping %d records fetched before a rebalance; re-reading from committed offsets",
            len(records),
        )
        for tp in sorted(first.keys() & assigned):
            try:
                # aiokafka retries a retriable error here without end (and the stage holds its
                # lock, which the next rebalance waits for): bounded, like every retry.
                async with asyncio.timeout(self.committed_timeout_s):
                    committed = await self.consumer.committed(tp)
            except Exception as exc:  # never skip: the first dropped offset is safe
                log.warning(
                    "committed offset of %s/%d unknown (%s: %s); re-reading from %d",
                    tp.topic,
                    tp.partition,
                    type(exc).__name__,
                    exc,
                    first[tp],
                )
                committed = first[tp]
            # The await above may have let another rebalance take the partition away (the seek
            # then raises); its new owner reads from the committed offset, all we would do.
            try:
                if committed is None:
                    await self.consumer.seek_to_beginning(tp)  # nothing committed: the start
                else:
                    self.consumer.seek(tp, committed)
            except IllegalStateError:
                log.info("%s/%d was revoked while re-reading; its new owner resumes it", *tp)

    def _rewind(self, records: Sequence[ConsumerRecord]) -> None:
        first = _first_offsets(records)
        for tp, offset in self._floor.items():  # never past an unfinished earlier batch
            first[tp] = min(first.get(tp, offset), offset)
        assigned = self.consumer.assignment()
        for tp, offset in first.items():
            if tp in assigned:
                self.consumer.seek(tp, offset)


def _tp(record: ConsumerRecord) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


def _first_offsets(records: Sequence[ConsumerRecord]) -> dict[TopicPartition, int]:
    """The lowest offset of ``records`` in each partition: where re-reading them starts."""
    first: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        first[tp] = min(first.get(tp, r.offset), r.offset)
    return first
