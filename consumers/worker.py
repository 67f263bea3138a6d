"""The backend worker: micro-batched inference for one backend (cpu or gpu).

Each micro-batch is grouped by model, scored off the event loop in the inference thread,
and turned into verdicts. An item its detector fails on goes to the next live backend of its
chain (attempts + 1, ``fallback_from`` extended); with none left it is dead-lettered as
``all_backends_failed``.

A batch's inference is bounded by WORKER_BATCH_TIMEOUT_S. Past it, the model counts as hung on
this backend: the batch's items are handed on like any other model failure, the worker stops
advertising the model at once (a heartbeat right away, so the router sends new items
elsewhere) and hands on every item of it that still arrives, without waiting. The stuck call
cannot be killed: the worker leaves its thread behind and scores the other models in a fresh
one. When the stuck call returns, the model is advertised and used again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from functools import partial
from typing import Any

from aiokafka.structs import ConsumerRecord
from opentelemetry.trace import Span
from pydantic import ValidationError

from deepfake_stream.consumers.batch_scoring import BatchScorer
from deepfake_stream.consumers.inference_thread import InferenceThread
from deepfake_stream.consumers.redis_store import DedupKey, RedisStore, text_digest
from deepfake_stream.consumers.scoring import Prepared, Scored, score_prepared
from deepfake_stream.consumers.thread_tuner import ThreadTuner
from deepfake_stream.core import metrics
from deepfake_stream.core.errors import (
    DetectError,
    DlqReason,
    InferenceTimedOut,
    InvalidInput,
    ModelUnavailable,
)
from deepfake_stream.core.liveness import LivenessView, now_ms
from deepfake_stream.core.settings import Backend, Settings
from deepfake_stream.core.stage import BatchResult, Outgoing
from deepfake_stream.core.tracing import (
    CORRELATION_HEADER,
    carrier_of,
    fail_span,
    headers_carrier,
    link_to,
    record_attributes,
    start_hop_span,
    trace_headers,
    with_trace,
)
from deepfake_stream.models.base import Detector
from deepfake_stream.models.operating_points import resolve_operating_point
from deepfake_stream.models.registry import Registry
from deepfake_stream.schemas import InputItem, RoutedItem, Verdict
from deepfake_stream.schemas.dead_letter import dead_letter

log = logging.getLogger(__name__)


def dedup_key(item: InputItem, model_version: str) -> DedupKey:
    """The contract's de-duplication key of ``item`` scored by ``model_version``."""
    return DedupKey(item.tenant, item.id, model_version, text_digest(item.text))


Entry = tuple[ConsumerRecord, RoutedItem]

OUTPUT_MARGIN_S = 30.0
"""The stage's ceiling on a worker's batch is WORKER_BATCH_TIMEOUT_S plus this: the worker
bounds the inference itself (and hands a hung batch's items on), the margin covers the Redis
calls (each bounded by REDIS_TIMEOUT_S) and producing and committing the outputs."""


class Worker:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        backend: Backend,
        detectors: dict[str, Detector],
        liveness: LivenessView,
        executor: Executor,
        store: RedisStore | None = None,
        tune_threads: int = 0,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.backend = backend
        self.detectors = detectors
        self.liveness = liveness
        self.executor = executor
        self.tune_threads = tune_threads
        """Cores to tune torch's thread count over, per model (0: not tuned; see
        ``consumers/thread_tuner.py``)."""
        self.tuners: dict[str, ThreadTuner | None] = {}
        """Per model scored so far, its tuner, or None where its thread count is kept as set."""
        self.store = store
        """Verdict cache and de-duplication (deepfake_stream/consumers/redis_store.py); None:
        without."""
        self.scored = 0
        self.handed_on = 0
        self.dead = 0
        self.cache_hits = 0
        self.duplicates = 0
        """Items not scored again: their (tenant, id, model_version, text_sha256) verdict was
        already published."""
        self._versions: dict[str, str] = {}
        """Each detector's version, read once per batch: computing it hashes the artifact
        manifest, which cost ~10% of a worker's CPU when done once per item."""
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        """Labelled metric children (verdicts, end-to-end latency) per (model, label)."""
        self.inference_timeout_s = settings.worker.batch_timeout_s
        self.hung: dict[str, float] = {}
        """Models whose inference ran past the timeout and has not returned yet (monotonic
        time the timeout struck): not advertised, and their items are handed on at once."""
        self.on_advertised_change: Callable[[], None] | None = None
        """Called when the advertised models change (the heartbeat publishes at once)."""

    def advertised(self) -> list[str]:
        """The models this worker offers the router: loaded, and not hung."""
        return [m for m, d in self.detectors.items() if d.ready and m not in self.hung]

    async def handle(self, records: Sequence[ConsumerRecord]) -> BatchResult:
        result = BatchResult()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.inference_timeout_s
        self._versions = {m: d.version for m, d in self.detectors.items()}
        groups: dict[str, list[tuple[ConsumerRecord, RoutedItem]]] = {}
        # One span per item, child of the span that sent it here (router or the backend it
        # fell back from); its context is what the verdict or the hand-on carries.
        spans: dict[int, Span] = {}
        for record in records:
            try:
                item = RoutedItem.model_validate_json(record.value or b"")
            except (ValidationError, ValueError) as exc:
                self._dead(result, record, "invalid_schema", exc, attempts=0)
                continue
            if item.deadline_ms is not None and item.deadline_ms <= now_ms():
                self._dead(
                    result,
                    record,
                    "deadline_exceeded",
                    f"deadline {item.deadline_ms} passed before scoring",
                    attempts=item.routing.attempts,
                    span=self._item_span(record, item),
                )
                continue
            config = self.registry.models.get(item.routing.model_id)
            try:  # the router checked it; this catches a hand-made item or an edited registry
                if config is not None:
                    resolve_operating_point(config, item.operating_point)
            except InvalidInput as exc:
                span = self._item_span(record, item)
                self._dead(
                    result, record, exc.reason, exc, attempts=item.routing.attempts, span=span
                )
                continue
            spans[id(record)] = self._item_span(record, item)
            if item.routing.model_id not in self.detectors:
                err = ModelUnavailable(f"{item.routing.model_id} is not loaded on {self.backend}")
                self._fail(result, record, item, err, spans[id(record)])
                continue
            groups.setdefault(item.routing.model_id, []).append((record, item))

        groups = await self._unpublished(groups, spans)
        published: list[DedupKey] = []
        item_spans = {id(i): spans[id(r)] for es in groups.values() for r, i in es}
        scorer = self._scorer(deadline, item_spans)
        for model_id, entries in groups.items():
            by_item = {id(item): (record, spans[id(record)]) for record, item in entries}
            outcomes = await scorer.score_group(
                model_id,
                [item for _, item in entries],
                backend=self.backend,
            )
            # A remote detector learns its version from its answers (the Modal bridge's
            # first batch would otherwise carry the local spec's version).
            self._versions[model_id] = self.detectors[model_id].version
            fresh: dict[str, float] = {}
            for outcome in outcomes:
                record, span = by_item[id(outcome.item)]
                if outcome.verdict is None:
                    self._fail(result, record, outcome.item, outcome.error, span)
                    continue
                if outcome.cached:
                    span.set_attribute("deepfake.cache", "hit")
                else:
                    assert outcome.scored.score is not None  # a verdict always has its score
                    fresh[outcome.item.text] = outcome.scored.score
                self._emit_verdict(result, outcome.item, span, outcome.verdict)
                published.append(dedup_key(outcome.item, outcome.verdict.model_version))
            if self.store is not None:
                await self.store.cache_scores(self._versions[model_id], model_id, fresh)
        if self.store is not None and published:
            # Recorded only once the broker acknowledged these verdicts: never loses one.
            result.after_ack.append(partial(self.store.record_published, published))
        return result

    def _scorer(self, deadline: float, item_spans: dict[int, Span]) -> BatchScorer:
        """The shared scoring path, with this worker's hooks: its own loaded detectors, each
        call bounded by WORKER_BATCH_TIMEOUT_S (one deadline for the whole micro-batch), the
        verdict cache, and each call linked to the spans of the items it scores."""

        async def detector_for(model_id: str) -> Detector:
            return self.detectors[model_id]

        async def run(model_id: str, detector: Detector, chunk: list[Prepared]) -> list[Scored]:
            return await self._infer(model_id, detector, chunk, deadline)

        def observe(model_id: str, size: int, seconds: float) -> None:
            metrics.INFERENCE_SECONDS.labels(model_id, self.backend).observe(seconds)
            metrics.BATCH_SIZE.labels(self.backend, model_id).observe(size)

        return BatchScorer(
            registry=self.registry,
            max_windows=self.settings.limits.max_windows,
            executor=lambda: self.executor,
            detector_for=detector_for,
            stage=self.backend,
            run=run,
            cached=self._cached if self.store is not None else None,
            links=lambda item: link_to(item_spans[id(item)]),
            observe=observe,
        )

    async def _infer(
        self, model_id: str, detector: Detector, prepared: list[Prepared], deadline: float
    ) -> list[Scored]:
        """Score ``prepared`` texts (all their windows) in the inference thread, waiting at
        most until ``deadline``."""
        n = len(prepared)
        since = self.hung.get(model_id)
        if since is not None:  # stuck in an earlier call: hand these on without waiting
            error: BaseException = ModelUnavailable(
                f"model {model_id} is hung on {self.backend} (an inference still running "
                f"{time.monotonic() - since:.0f}s after WORKER_BATCH_TIMEOUT_S)"
            )
            return [Scored(None, error, n) for _ in prepared]
        loop = asyncio.get_running_loop()
        timed_out = InferenceTimedOut(
            f"inference of {model_id} on {self.backend} ran past "
            f"{self.inference_timeout_s:g}s (WORKER_BATCH_TIMEOUT_S)"
        )
        left = deadline - loop.time()
        if left <= 0:  # earlier chunks of this batch used its time up: nothing is hung
            return [Scored(None, timed_out, n) for _ in prepared]
        call = loop.run_in_executor(self.executor, self._scoring(model_id, detector, prepared))
        try:
            # shield: on a timeout the call keeps its future, which says when it returns.
            return await asyncio.wait_for(asyncio.shield(call), left)
        except TimeoutError:
            self._hung(model_id, call)
            return [Scored(None, timed_out, n) for _ in prepared]

    def _scoring(
        self, model_id: str, detector: Detector, prepared: list[Prepared]
    ) -> Callable[[], list[Scored]]:
        """The call the inference thread runs: ``score_prepared``, under the thread tuner
        when torch threads are tuned (the characters scored are its unit of work)."""
        work = partial(score_prepared, detector, prepared)
        tuner = self._tuner(model_id)
        if tuner is None:
            return work
        chars = sum(len(t) for p in prepared for t in p.texts())
        return partial(tuner.run, work, chars)

    def _tuner(self, model_id: str) -> ThreadTuner | None:
        """The model's thread tuner, decided on its first batch: none when threads are not
        tuned, or when its registry entry sets `num_threads` (kept as set)."""
        if model_id not in self.tuners:
            config = self.registry.models.get(model_id)
            pinned = config is not None and config.options.get("num_threads")
            tuned = self.tune_threads and not pinned
            self.tuners[model_id] = ThreadTuner(self.tune_threads) if tuned else None
        return self.tuners[model_id]

    def _hung(self, model_id: str, call: asyncio.Future[Any]) -> None:
        """Stop using and advertising ``model_id`` until ``call`` returns; score the other
        models in a fresh thread (the stuck one cannot be killed)."""
        self.hung[model_id] = time.monotonic()
        stuck, self.executor = self.executor, InferenceThread(f"{self.backend}-inference")
        stuck.shutdown(wait=False)  # its thread ends if the call ever returns
        metrics.MODEL_HUNG.labels(model_id, self.backend).set(1)
        log.error(
            "inference of %s on %s ran past %gs (WORKER_BATCH_TIMEOUT_S): its items go to the "
            "next backend of their chain, and %s is not advertised until that call returns",
            model_id,
            self.backend,
            self.inference_timeout_s,
            model_id,
        )
        call.add_done_callback(partial(self._returned, model_id))
        self._advertised_changed()

    def _returned(self, model_id: str, call: asyncio.Future[Any]) -> None:
        if not call.cancelled() and call.exception() is not None:  # retrieved: no warning
            log.info("the stuck inference of %s failed when it returned", model_id)
        since = self.hung.pop(model_id, None)
        metrics.MODEL_HUNG.labels(model_id, self.backend).set(0)
        if since is not None:
            log.warning(
                "the stuck inference of %s on %s returned after %.0fs; advertised again",
                model_id,
                self.backend,
                time.monotonic() - since,
            )
        self._advertised_changed()

    def _advertised_changed(self) -> None:
        if self.on_advertised_change is not None:
            self.on_advertised_change()

    def _emit_verdict(
        self, result: BatchResult, item: RoutedItem, span: Span, verdict: Verdict
    ) -> None:
        model_id = item.routing.model_id
        span.set_attributes(
            {
                "deepfake.outcome": "verdict",
                "deepfake.score": verdict.score,
                "deepfake.label": verdict.label,
                "deepfake.model_version": verdict.model_version,
            }
        )
        span.end()
        result.out.append(
            Outgoing(
                topic=self.settings.topics.verdicts,
                value=verdict.model_dump_json().encode(),
                key=item.id.encode(),
                headers=trace_headers(carrier_of(span, item.routing.trace)),
            )
        )
        self.scored += 1
        counted, latency = self._metric_children(model_id, verdict.label)
        counted.inc()
        latency.observe(verdict.latency_ms / 1000)

    def _metric_children(self, model_id: str, label: str) -> tuple[Any, Any]:
        found = self._children.get((model_id, label))
        if found is None:
            found = self._children[(model_id, label)] = (
                metrics.VERDICTS.labels(model_id, self.backend, label),
                metrics.END_TO_END_SECONDS.labels(model_id, self.backend),
            )
        return found

    async def _unpublished(
        self, groups: dict[str, list[Entry]], spans: dict[int, Span]
    ) -> dict[str, list[Entry]]:
        """Drop items whose verdict is already published, by the contract's key (tenant, id,
        model_version, text_sha256): recorded in Redis after an earlier ack (one MGET for the
        batch), or earlier in this very batch. An edit or another tenant's item is kept."""
        keys = [dedup_key(i, self._versions[m]) for m, es in groups.items() for _, i in es]
        recorded = iter(await self.store.already_published(keys) if self.store else [])
        seen: set[DedupKey] = set()
        kept: dict[str, list[Entry]] = {}
        dropped: list[str] = []
        for (model_id, entries), key in zip(
            ((m, e) for m, es in groups.items() for e in es), keys, strict=True
        ):
            record, item = entries
            duplicate = next(recorded, False) or key in seen
            # A ?via=stream request waits for its own reply (an HTTP client retrying with the
            # same id and text): it is answered, at worst as a duplicate verdict.
            if duplicate and CORRELATION_HEADER not in item.routing.trace:
                self.duplicates += 1
                metrics.DUPLICATES_DROPPED.labels(self.backend, model_id).inc()
                dropped.append(item.id)
                span = spans[id(record)]
                span.set_attribute("deepfake.outcome", "duplicate")
                span.end()
                continue
            seen.add(key)
            kept.setdefault(model_id, []).append((record, item))
        if dropped:  # one line per batch (ids only, never texts), however many were dropped
            log.info(
                "dropped %d duplicate item(s) whose verdict is already published: %s%s",
                len(dropped),
                ", ".join(repr(i) for i in dropped[:5]),
                " ..." if len(dropped) > 5 else "",
            )
        return kept

    async def _cached(
        self, model_id: str, version: str, items: Sequence[RoutedItem]
    ) -> list[float | None]:
        """The texts' cached document scores (one MGET; a hit is a verdict without
        inference, so its batch_size is 1). The cache holds document scores only: an item
        asking for ``detail`` (window spans) is always scored."""
        assert self.store is not None
        cached = await self.store.cached_scores(version, [i.text for i in items])
        found = [None if i.detail else s for i, s in zip(items, cached, strict=True)]
        hits = sum(s is not None for s in found)
        self.cache_hits += hits
        metrics.CACHE_HITS.labels(model_id).inc(hits)
        metrics.CACHE_MISSES.labels(model_id).inc(len(items) - hits)
        return found

    def _item_span(self, record: ConsumerRecord, item: RoutedItem) -> Span:
        parent = item.routing.trace or headers_carrier(record.headers)
        return start_hop_span(
            f"score {self.backend}",
            parent,
            attributes={
                **record_attributes(record, self.backend),
                "deepfake.item_id": item.id,
                "deepfake.model_id": item.routing.model_id,
                "deepfake.attempts": item.routing.attempts,
            },
        )

    def _fail(
        self,
        result: BatchResult,
        record: ConsumerRecord,
        item: RoutedItem,
        error: BaseException,
        span: Span,
    ) -> None:
        env = item.routing
        if isinstance(error, DetectError) and not error.retriable:
            self._dead(result, record, error.reason, error, attempts=env.attempts, span=span)
            return
        nxt = self.liveness.first_alive(env.chain, env.model_id)
        if nxt is None:
            context = (
                f"tried {[*env.fallback_from, self.backend]}; "
                f"no live backend left in {list(env.chain)}"
            )
            self._dead(
                result,
                record,
                "all_backends_failed",
                error,
                attempts=env.attempts,
                context=context,
                span=span,
            )
            return
        span.record_exception(error, escaped=False)
        span.set_attributes({"deepfake.outcome": "handed_on", "deepfake.next_backend": nxt})
        span.end()
        carried = carrier_of(span, env.trace)
        rest = env.chain[env.chain.index(nxt) + 1 :]
        handed = item.model_copy(
            update={
                "routing": env.model_copy(
                    update={
                        "target": nxt,
                        "chain": rest,
                        "attempts": env.attempts + 1,
                        "fallback_from": [*env.fallback_from, self.backend],
                        "trace": carried,
                    }
                )
            }
        )
        log.info(
            "item %s failed on %s (%s: %s); handing it to %s",
            item.id,
            self.backend,
            type(error).__name__,
            error,
            nxt,
        )
        result.out.append(
            Outgoing(
                topic=self.settings.topics.backend(nxt),
                value=handed.model_dump_json().encode(),
                key=item.id.encode(),
                headers=trace_headers(carried),
            )
        )
        self.handed_on += 1
        metrics.FALLBACKS.labels(self.backend, nxt).inc()

    def poisoned(self, record: ConsumerRecord, error: BaseException) -> Outgoing:
        """The dead letter of a record whose batches failed every attempt (the stage loop)."""
        try:
            attempts = RoutedItem.model_validate_json(record.value or b"").routing.attempts
        except (ValidationError, ValueError):
            attempts = 0
        result = BatchResult()
        self._dead(result, record, "model_error", error, attempts=attempts)
        return result.out[0]

    def _dead(
        self,
        result: BatchResult,
        record: ConsumerRecord,
        reason: DlqReason,
        error: BaseException | str,
        *,
        attempts: int,
        context: str = "",
        span: Span | None = None,
    ) -> None:
        self.dead += 1
        received = headers_carrier(record.headers)
        if span is None:  # unreadable item: its span continues the record's headers
            attrs = record_attributes(record, self.backend)
            span = start_hop_span(f"score {self.backend}", received, attributes=attrs)
        fail_span(span, reason, error)
        span.end()
        letter = dead_letter(
            record,
            topic=self.settings.topics.dlq,
            reason=reason,
            stage=self.backend,
            error=error,
            attempts=attempts,
            context=context,
            max_bytes=self.settings.kafka.max_request_bytes,
        )
        result.out.append(with_trace(letter, carrier_of(span, received)))
