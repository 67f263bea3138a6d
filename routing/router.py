"""The router consumer: validate, resolve the model, pick a live backend, republish.

Nothing a client sends stops it: every bad message becomes a dead letter with the contract's
reason. When no backend of an item's chain has a live worker, the item is held instead of
being sent where nobody consumes it: kept in memory and retried on every batch (and while
idle), for at most ``ROUTER_HOLD_MAX_S``, then dead-lettered ``no_live_backend``. A held item
does not block the items behind it on its partition: they are routed, and the partition's
commit stops at its lowest held offset (at-least-once: after a crash the items behind it are
routed again, a duplicate). Past ``ROUTER_HOLD_MAX_BYTES`` of held items, a partition whose
item cannot be routed is re-read later instead (back-pressure).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord, TopicPartition

from deepfake_stream.core.errors import DlqReason, InvalidInput, UnknownModel
from deepfake_stream.core.headers import parse_headers
from deepfake_stream.core.liveness import LivenessView, now_ms
from deepfake_stream.core.settings import Settings
from deepfake_stream.core.stage import BatchResult, Outgoing
from deepfake_stream.core.tracing import (
    carrier_of,
    fail_span,
    headers_carrier,
    record_attributes,
    start_hop_span,
    trace_from_headers,
    trace_headers,
    with_trace,
)
from deepfake_stream.models.operating_points import resolve_operating_point
from deepfake_stream.models.registry import ModelConfig, Registry
from deepfake_stream.routing.balance import PartitionBalancer
from deepfake_stream.routing.decide import candidates, choose_model, choose_route
from deepfake_stream.schemas import InputItem, RoutedItem, parse_input
from deepfake_stream.schemas.dead_letter import dead_letter
from deepfake_stream.text.windows import window_count

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Held:
    record: ConsumerRecord
    item: InputItem
    config: ModelConfig
    seen_ms: int
    since: float
    """time.monotonic() when it was first held."""


class Router:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        liveness: LivenessView,
        balancer: PartitionBalancer | None = None,
    ) -> None:
        """``balancer``: spread routed items over partitions by their cost (the service
        gives one); without it the producer's key hash places them."""
        self.settings = settings
        self.registry = registry
        self.liveness = liveness
        self.balancer = balancer
        self._last_hold_log = 0.0
        self.routed: dict[str, int] = {}
        self.dead: dict[str, int] = {}
        self._held: dict[tuple[TopicPartition, int], Held] = {}
        self._held_bytes = 0
        self._next: dict[TopicPartition, int] = {}
        """Per partition, the offset after the last record handled (routed, dead or held)."""

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Forget the held items of partitions taken away: their new owner re-reads them from
        the committed offset, which never passed a held item."""
        gone = set(partitions)
        for key in [k for k in self._held if k[0] in gone]:
            self._held_bytes -= len(self._held.pop(key).record.value or b"")
        for tp in gone:
            self._next.pop(tp, None)

    def pending(self) -> bool:
        """Held items wait: the stage calls :meth:`handle` even when nothing new arrives."""
        return bool(self._held)

    async def handle(self, records: Sequence[ConsumerRecord]) -> BatchResult:
        result = BatchResult()
        touched = self._retry_held(result)
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if tp in result.hold:
                continue  # back-pressure: keep partition order behind a re-read item
            if (tp, record.offset) in self._held:
                continue  # re-read (after a rebalance or a failed batch): already waiting
            try:
                self._route_one(record, tp, result)
            except Exception as exc:
                # Defence in depth: an input that breaks routing in a way validation did not
                # foresee must not be re-read forever. It is dead-lettered, and logged loudly.
                log.exception("unexpected error routing offset %s of %s", record.offset, tp)
                self._dead(result, record, "invalid_schema", exc)
            if tp not in result.hold:
                self._next[tp] = max(self._next.get(tp, 0), record.offset + 1)
        # Commit no further than the lowest held offset; where the last held item of a
        # partition was just resolved, up to everything handled since.
        lowest: dict[TopicPartition, int] = {}
        for tp, offset in self._held:
            lowest[tp] = min(lowest.get(tp, offset), offset)
        for tp in touched | lowest.keys():
            result.commit[tp] = lowest.get(tp, self._next.get(tp, 0))
        return result

    def _retry_held(self, result: BatchResult) -> set[TopicPartition]:
        """Route, or dead-letter when their time is up, the held items; returns the
        partitions some of which were resolved."""
        resolved: set[TopicPartition] = set()
        hold_max_s = self.settings.router.hold_max_s
        for (tp, offset), held in sorted(self._held.items(), key=lambda kv: kv[0][1]):
            item, config = held.item, held.config
            if item.deadline_ms is not None and item.deadline_ms <= now_ms():
                self._dead(
                    result,
                    held.record,
                    "deadline_exceeded",
                    f"deadline {item.deadline_ms} passed while waiting for a live backend",
                )
            elif self._route(held.record, item, config, held.seen_ms, result):
                pass
            elif time.monotonic() - held.since >= hold_max_s:
                backends = candidates(config, item.prefer_backend)
                self._dead(
                    result,
                    held.record,
                    "no_live_backend",
                    f"no live worker for model {config.model_id} on any of {list(backends)} "
                    f"within {hold_max_s:g}s",
                )
            else:
                continue
            del self._held[(tp, offset)]
            self._held_bytes -= len(held.record.value or b"")
            resolved.add(tp)
        return resolved

    def _route_one(self, record: ConsumerRecord, tp: TopicPartition, result: BatchResult) -> None:
        limits = self.settings.limits
        seen_ms = now_ms()
        try:
            item = parse_input(
                record.value,
                max_text_chars=limits.max_text_chars,
                max_message_bytes=limits.max_message_bytes,
                max_json_depth=limits.max_json_depth,
            )
            config = choose_model(self.registry, item.model_id, item.text)
            # An operating point the model does not document is invalid_schema, never a float.
            resolve_operating_point(config, item.operating_point)
        except (InvalidInput, UnknownModel) as exc:
            self._dead(result, record, exc.reason, exc)
            return
        if item.deadline_ms is not None and item.deadline_ms <= seen_ms:
            self._dead(
                result,
                record,
                "deadline_exceeded",
                f"deadline {item.deadline_ms} passed before routing",
            )
            return
        if self._route(record, item, config, seen_ms, result):
            return
        size = len(record.value or b"")
        if self._held_bytes + size > self.settings.router.hold_max_bytes:
            result.hold[tp] = record.offset  # too much held already: re-read it later
        else:
            self._held[(tp, record.offset)] = Held(record, item, config, seen_ms, time.monotonic())
            self._held_bytes += size
        self._log_hold(config.model_id, candidates(config, item.prefer_backend))

    def _route(
        self,
        record: ConsumerRecord,
        item: InputItem,
        config: ModelConfig,
        seen_ms: int,
        result: BatchResult,
    ) -> bool:
        """Publish the routed item to a live backend; False when none is live."""
        topics = self.settings.topics
        route = choose_route(config, item.prefer_backend, self.liveness.alive)
        if route is None:
            return False
        # The router's span continues the producer's trace (or starts it); its own context is
        # what the routed item carries on, so the worker's span becomes its child.
        received = headers_carrier(record.headers)
        span = start_hop_span(
            f"route {record.topic}",
            received,
            attributes={
                **record_attributes(record, "router"),
                "deepfake.item_id": item.id,
                "deepfake.model_id": config.model_id,
                "deepfake.target": route.target,
            },
            start_time=seen_ms * 1_000_000,
        )
        span.set_attribute("deepfake.outcome", "routed")
        span.end()
        trace = carrier_of(span, received) or trace_from_headers(record.headers)
        routed = RoutedItem.first_hop(
            item,
            model_id=config.model_id,
            target=route.target,
            chain=list(route.chain),
            first_seen_ms=seen_ms,
            trace=trace,
            replay=parse_headers(record.headers).get("deepfake.replay") == "true",
        )
        topic = topics.backend(route.target)
        key = item.id.encode()
        partition = None
        if self.balancer is not None:
            # What the worker will score: one detector pass per window.
            windows = window_count(
                len(item.text),
                config.window_chars,
                config.window_limit(self.settings.limits.max_windows),
            )
            partition = self.balancer.pick(topic, windows, key)
        result.out.append(
            Outgoing(
                topic=topic,
                value=routed.model_dump_json().encode(),
                key=key,
                headers=trace_headers(trace),
                partition=partition,
            )
        )
        self.routed[route.target] = self.routed.get(route.target, 0) + 1
        return True

    def poisoned(self, record: ConsumerRecord, error: BaseException) -> Outgoing:
        """The dead letter of a record whose batches failed every attempt (the stage loop)."""
        result = BatchResult()
        self._dead(result, record, "model_error", error)
        return result.out[0]

    def _dead(
        self,
        result: BatchResult,
        record: ConsumerRecord,
        reason: DlqReason,
        err: BaseException | str,
    ) -> None:
        self.dead[reason] = self.dead.get(reason, 0) + 1
        received = headers_carrier(record.headers)
        span = start_hop_span(
            f"route {record.topic}", received, attributes=record_attributes(record, "router")
        )
        fail_span(span, reason, err)
        span.end()
        letter = dead_letter(
            record,
            topic=self.settings.topics.dlq,
            reason=reason,
            stage="router",
            error=err,
            attempts=0,
            max_bytes=self.settings.kafka.max_request_bytes,
        )
        result.out.append(with_trace(letter, carrier_of(span, received)))

    def _log_hold(self, model_id: str, backends: Sequence[str]) -> None:
        if time.monotonic() - self._last_hold_log > 10:
            self._last_hold_log = time.monotonic()
            log.warning(
                "no live worker for model %s on any of %s; holding items until one announces "
                "itself (live now: %s)",
                model_id,
                list(backends),
                self.liveness.live_backends(),
            )
