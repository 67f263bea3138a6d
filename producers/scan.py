"""Reading a bounded slice of a topic's history: by partition offsets, time range or ids.

Reads without a consumer group (partitions assigned, nothing committed), so it never
disturbs a live group. The end of every partition is fixed when the scan opens, so a replay
that writes into the topic it reads (``--dlq`` re-injects into ``detect.in``; re-dead-letters
land on ``detect.dlq``) still ends. Time ranges are scanned by message timestamp from the
start of the range's partitions: the embedded broker has no ``offsets_for_times``, and
producer timestamps need not be monotonic, so a linear scan is the only exact answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from deepfake_stream.core.errors import DetectError
from deepfake_stream.core.headers import parse_headers
from deepfake_stream.core.kafka import make_consumer
from deepfake_stream.core.reader import topic_partitions
from deepfake_stream.core.settings import Settings


@dataclass(kw_only=True)
class Selection:
    """What to read; every filter given must match (offsets AND time range AND ids ...)."""

    offsets: dict[int, tuple[int, int | None]] = field(default_factory=dict)
    """Partition → (first offset, last offset inclusive or None for the end)."""
    since_ms: int | None = None
    until_ms: int | None = None
    """Message timestamps in [since_ms, until_ms)."""
    ids: set[str] | None = None
    """Item ids (the message key; the JSON ``id`` when a message has no key)."""
    reasons: set[str] | None = None
    """Dead letters only: their ``dlq.reason`` header."""

    def matches(self, record: ConsumerRecord) -> bool:
        if self.since_ms is not None and record.timestamp < self.since_ms:
            return False
        if self.until_ms is not None and record.timestamp >= self.until_ms:
            return False
        if self.reasons is not None:
            reason = parse_headers(record.headers).get("dlq.reason", "")
            if reason not in self.reasons:
                return False
        return self.ids is None or record_id(record) in self.ids


def record_id(record: ConsumerRecord) -> str | None:
    if record.key:
        return record.key.decode("utf-8", "replace")
    import json

    try:
        doc = json.loads(record.value or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    return str(doc["id"]) if isinstance(doc, dict) and "id" in doc else None


class SelectionError(DetectError, ValueError):
    """What to replay names nothing that exists (the command answers one line, exit 2)."""


def parse_offsets(spec: str) -> dict[int, tuple[int, int | None]]:
    """``P:A-B,P2:C-`` → {P: (A, B), P2: (C, None)}; B inclusive, empty B means the end.

    A spec that names no range, or a partition twice, is refused: either would silently
    replay something else than asked (the whole topic, or only one of the two ranges)."""
    out: dict[int, tuple[int, int | None]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            p, _, rng = part.partition(":")
            lo, _, hi = rng.partition("-")
            partition, first, last = int(p), int(lo), (int(hi) if hi.strip() else None)
        except ValueError:
            raise ValueError(f"bad offset range {part!r}: expected PARTITION:FROM-TO") from None
        if partition < 0 or first < 0 or (last is not None and last < first):
            raise ValueError(f"bad offset range {part!r}: need PARTITION >= 0, 0 <= FROM <= TO")
        if partition in out:
            raise ValueError(
                f"bad offset ranges {spec!r}: partition {partition} is given twice "
                "(one range per partition)"
            )
        out[partition] = (first, last)
    if not out:
        raise ValueError(f"bad offset ranges {spec!r}: expected PARTITION:FROM-TO[,...]")
    return out


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or ISO 8601 (a time without zone is UTC)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad time {text!r}: expected ISO 8601 or epoch milliseconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def read_ids(path: Path) -> set[str]:
    """One id per line; blank lines and lines starting with # are ignored."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {line for line in lines if line and not line.startswith("#")}


class Scan:
    """``async with Scan(...) as scan``: ``scan.total`` messages in range, then ``records()``."""

    def __init__(
        self, settings: Settings, topic: str, selection: Selection, *, missing_ok: bool = False
    ) -> None:
        self.missing_ok = missing_ok
        """A topic that does not exist reads as empty (instead of an error)."""
        self.settings = settings
        self.topic = topic
        self.selection = selection
        self.scanned = 0
        self._start: dict[TopicPartition, int] = {}
        self._last: dict[TopicPartition, int | None] = {}
        self._stop: dict[TopicPartition, int] = {}
        """The end of each partition's range, fixed at its first fetch."""
        self._estimate: dict[TopicPartition, int] = {}
        self._consumer = make_consumer(
            settings, group_id=None, role="replay-scan", auto_offset_reset="earliest"
        )

    async def __aenter__(self) -> Scan:
        await self._consumer.start()
        try:
            await self._open()
        except BaseException:
            try:
                await self._consumer.stop()
            except asyncio.CancelledError:
                # aiokafka's group-less consumer, stopped before its internal task first ran,
                # re-raises that task's cancellation: only our own cancellation is passed on.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def _open(self) -> None:
        try:
            existing = await topic_partitions(
                self._consumer, self.topic, 2.0 if self.missing_ok else 10.0
            )
        except RuntimeError:
            if not self.missing_ok:
                raise
            return
        wanted = set(self.selection.offsets) or existing
        missing = wanted - existing
        if missing:
            raise SelectionError(
                f"{self.topic} has no partition(s) {sorted(missing)} "
                f"(it has {len(existing)}: 0 to {max(existing, default=-1)})"
            )
        tps = [TopicPartition(self.topic, p) for p in sorted(wanted)]
        self._consumer.assign(tps)
        begin = await self._consumer.beginning_offsets(tps)
        # Only an estimate: the embedded broker answers ListOffsets(latest) with the last
        # batch's base offset + 1. The end is fixed from the first fetch's high watermark.
        end = await self._consumer.end_offsets(tps)
        for tp in tps:
            first, last = self.selection.offsets.get(tp.partition, (0, None))
            self._start[tp] = max(begin[tp], first)
            self._last[tp] = last
            self._estimate[tp] = end[tp] if last is None else min(end[tp], last + 1)
            self._consumer.seek(tp, self._start[tp])

    @property
    def total(self) -> int:
        """Messages in range (exact once every partition was fetched once)."""
        return sum(
            max(0, self._stop.get(tp, self._estimate[tp]) - start)
            for tp, start in self._start.items()
        )

    def _fix_stop(self, tp: TopicPartition) -> int | None:
        if tp not in self._stop:
            high = self._consumer.highwater(tp)
            if high is None:
                return None  # not fetched yet
            last = self._last[tp]
            self._stop[tp] = high if last is None else min(high, last + 1)
        return self._stop[tp]

    async def records(self, *, deadline: float | None = None) -> AsyncIterator[ConsumerRecord]:
        """Every message in range that matches the selection, partition by partition in
        offset order; stops at each range's end, or at ``deadline`` (monotonic)."""
        active = set(self._start)
        while active:
            if deadline is not None and time.monotonic() > deadline:
                return
            batches = await self._consumer.getmany(*active, timeout_ms=300, max_records=500)
            for tp, records in batches.items():
                stop = self._fix_stop(tp)
                for r in records:
                    if stop is not None and r.offset >= stop:
                        break
                    self.scanned += 1
                    if self.selection.matches(r):
                        yield r
            for tp in list(active):
                stop = self._fix_stop(tp)
                # Compare positions, not the last offset seen: compacted or aborted offsets
                # are never returned, yet the position moves past them.
                if stop is not None and await self._consumer.position(tp) >= stop:
                    active.discard(tp)
                    self._consumer.pause(tp)
