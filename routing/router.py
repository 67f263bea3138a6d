"""The router consumer: validate, resolve the model, pick a live backend, republish.

Nothing a client sends stops it: every bad message becomes a dead letter with the contract's
reason. When no backend of an item's chain has a live worker, the item is held (its partition
is re-read shortly) instead of being sent where nobody consumes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from aiokafka.structs import ConsumerRecord, TopicPartition

from consumers.dead_letters import dead_letter
from consumers.stage import BatchResult, Outgoing
from deepfake_stream.errors import InvalidInput, UnknownModel
from deepfake_stream.settings import Settings
from deepfake_stream.tracing import (
    carrier_of,
    fail_span,
    headers_carrier,
    record_attributes,
    start_hop_span,
    trace_from_headers,
    trace_headers,
    with_trace,
)
from routing.decide import candidates, choose_route
from routing.liveness import LivenessView, now_ms
from routing.registry import Registry
from schemas import RoutedItem, parse_input

log = logging.getLogger(__name__)


class Router:
    def __init__(self, settings: Settings, registry: Registry, liveness: LivenessView) -> None:
        self.settings = settings
        self.registry = registry
        self.liveness = liveness
        self._last_hold_log = 0.0
        self.routed: dict[str, int] = {}
        self.dead: dict[str, int] = {}

    async def handle(self, records: Sequence[ConsumerRecord]) -> BatchResult:
        result = BatchResult()
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if tp in result.hold:
                continue  # keep partition order behind a held item
            try:
                self._route_one(record, tp, result)
            except Exception as exc:
                # Defence in depth: an input that breaks routing in a way validation did not
                # foresee must not be re-read forever. It is dead-lettered, and logged loudly.
                log.exception("unexpected error routing offset %s of %s", record.offset, tp)
                self._dead(result, record, "invalid_schema", exc)
        return result

    def _route_one(self, record: ConsumerRecord, tp: TopicPartition, result: BatchResult) -> None:
        limits = self.settings.limits
        topics = self.settings.topics
        seen_ms = now_ms()
        try:
            item = parse_input(
                record.value,
                max_text_chars=limits.max_text_chars,
                max_message_bytes=limits.max_message_bytes,
                max_json_depth=limits.max_json_depth,
            )
            config = self.registry.resolve(item.model_id)
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
        route = choose_route(config, item.prefer_backend, self.liveness.alive)
        if route is None:
            result.hold[tp] = record.offset
            self._log_hold(config.model_id, candidates(config, item.prefer_backend))
            return
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
            replay=_header(record, "deepfake.replay") == "true",
        )
        result.out.append(
            Outgoing(
                topic=topics.backend(route.target),
                value=routed.model_dump_json().encode(),
                key=item.id.encode(),
                headers=trace_headers(trace),
            )
        )
        self.routed[route.target] = self.routed.get(route.target, 0) + 1

    def _dead(self, result: BatchResult, record: ConsumerRecord, reason: str, err) -> None:  # type: ignore[no-untyped-def]
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
            reason=reason,  # type: ignore[arg-type]
            stage="router",
            error=err,
            attempts=0,
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


def _header(record: ConsumerRecord, name: str) -> str | None:
    for k, v in record.headers or ():
        if k == name and v is not None:
            return v.decode("utf-8", "replace")
    return None
