"""The one path from a micro-batch of routed items to verdicts, whoever asks: the worker, a
replay, the HTTP shim.

micro-batch -> group by model -> prepare (normalise, language, windows) -> cached scores ->
cap each call at the model's ``max_batch_size`` -> score, a failing text isolated
(:func:`~deepfake_stream.consumers.scoring.score_prepared`) -> a verdict per scored item
(:func:`~deepfake_stream.consumers.scoring.verdict_for`, the Verdict schema's rule), or the
error of an item that failed.

What a caller does with a failed item is its own policy: the worker hands it to the next
backend or dead-letters it, a replay dead-letters it, the shim answers 502. The hooks are what
differs between them: where detectors come from, how one call is run (the worker bounds it in
time), which scores are cached, how a call is traced and measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from opentelemetry.trace import Link, SpanKind

from deepfake_stream.consumers.scoring import (
    Prepared,
    Scored,
    prepare_all,
    score_prepared,
    verdict_for,
)
from deepfake_stream.core.tracing import fail_span, start_hop_span
from deepfake_stream.models.base import Detector
from deepfake_stream.models.registry import ModelConfig, Registry
from deepfake_stream.schemas import BackendName, RoutedItem, Verdict


class _Outcome(Protocol):
    @property
    def score(self) -> Any: ...
    @property
    def error(self) -> BaseException | None: ...


E = TypeVar("E")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O", bound=_Outcome)  # noqa: E741

Observe = Callable[[str, int, float], None]
"""(model id, batch size, seconds) of one detector call, for the caller's metrics."""


def group_by_model(entries: Iterable[E], model_of: Callable[[E], str]) -> dict[str, list[E]]:
    """``entries`` by model id, each group in arrival order (a group is scored together)."""
    groups: dict[str, list[E]] = {}
    for entry in entries:
        groups.setdefault(model_of(entry), []).append(entry)
    return groups


async def score_capped(
    detector: Detector,
    config: ModelConfig,
    inputs: Sequence[I],
    run: Callable[[list[I]], Awaitable[list[O]]],
    *,
    stage: str,
    parent: dict[str, str] | None = None,
    links: Callable[[range], Sequence[Link]] | None = None,
    observe: Observe | None = None,
    failure_reason: str | None = None,
) -> list[O]:
    """``run`` over ``inputs`` in calls of at most the model's ``max_batch_size``, one outcome
    per input, in order. Each call is an ``infer <model>`` span: a child of ``parent`` (a
    request's trace), linked to ``links(indexes)`` (the items' own spans). With
    ``failure_reason``, a call in which an input failed marks its span failed."""
    cap = config.max_batch_size or len(inputs) or 1
    outcomes: list[O] = []
    for start in range(0, len(inputs), cap):
        chunk = list(inputs[start : start + cap])
        span = start_hop_span(
            f"infer {config.model_id}",
            parent,
            kind=SpanKind.INTERNAL,
            links=links(range(start, start + len(chunk))) if links else None,
            attributes={
                "deepfake.stage": stage,
                "deepfake.model_id": config.model_id,
                "deepfake.model_version": detector.version,
                "deepfake.batch_size": len(chunk),
            },
        )
        started = time.perf_counter()
        try:
            scored = await run(chunk)
            failed = [o.error for o in scored if o.score is None]
            if failed and failure_reason:
                fail_span(span, failure_reason, failed[0])
        except BaseException as exc:
            if failure_reason:
                fail_span(span, failure_reason, exc)
            raise
        finally:
            span.end()
            if observe is not None:
                observe(config.model_id, len(chunk), time.perf_counter() - started)
        outcomes += scored
    return outcomes


def in_thread(
    executor: Callable[[], Executor],
    fn: Callable[[Detector, list[I]], list[O]],
    detector: Detector,
) -> Callable[[list[I]], Awaitable[list[O]]]:
    """A ``run`` for :func:`score_capped`: ``fn(detector, chunk)`` in the inference thread."""

    async def run(chunk: list[I]) -> list[O]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor(), fn, detector, chunk)

    return run


@dataclass(frozen=True, slots=True)
class ItemScore:
    """One routed item's outcome: its verdict, or the error it failed with."""

    item: RoutedItem
    prepared: Prepared
    scored: Scored
    verdict: Verdict | None
    """None when the item failed (``scored.error`` says why)."""
    cached: bool = False
    """Scored from the verdict cache (no inference)."""

    @property
    def error(self) -> BaseException:
        assert self.verdict is None
        return self.scored.error or RuntimeError("no score")


Cached = Callable[[str, str, Sequence[RoutedItem]], Awaitable[list[float | None]]]
"""(model id, model version, items) -> each item's cached document score, or None."""
Run = Callable[[str, Detector, list[Prepared]], Awaitable[list[Scored]]]
"""One capped call: (model id, detector, prepared texts) -> their outcomes."""


@dataclass(kw_only=True)
class BatchScorer:
    """Scores micro-batches of routed items into :class:`ItemScore`\\ s."""

    registry: Registry
    max_windows: int
    executor: Callable[[], Executor]
    """The inference thread (a callable: the worker replaces a hung one)."""
    detector_for: Callable[[str], Awaitable[Detector]]
    stage: str
    """The ``deepfake.stage`` of the ``infer`` spans."""
    run: Run | None = None
    """How one capped call is run (default: :func:`score_prepared` in the inference thread)."""
    cached: Cached | None = None
    links: Callable[[RoutedItem], Link] | None = None
    """Each item's own span, linked from the call that scores it."""
    observe: Observe | None = None
    failure_reason: str | None = None

    async def score(
        self,
        items: Sequence[RoutedItem],
        *,
        backend: BackendName,
        parent: dict[str, str] | None = None,
    ) -> list[ItemScore]:
        """Every item's outcome, grouped by model (in the order models first appear)."""
        out: list[ItemScore] = []
        for model_id, group in group_by_model(items, lambda i: i.routing.model_id).items():
            out += await self.score_group(model_id, group, backend=backend, parent=parent)
        return out

    async def score_group(
        self,
        model_id: str,
        items: Sequence[RoutedItem],
        *,
        backend: BackendName,
        parent: dict[str, str] | None = None,
    ) -> list[ItemScore]:
        """The items of one model: cached scores first, the rest in capped calls."""
        if not items:
            return []
        detector = await self.detector_for(model_id)
        config = self.registry.models[model_id]
        loop = asyncio.get_running_loop()
        texts = [i.text for i in items]
        prepared = await loop.run_in_executor(
            self.executor(), prepare_all, texts, config, self.max_windows
        )
        hits: dict[int, Scored] = {}
        if self.cached is not None:
            cached = await self.cached(model_id, detector.version, items)
            hits = {n: Scored(s, None, 1) for n, s in enumerate(cached) if s is not None}
        misses = [n for n in range(len(items)) if n not in hits]
        run: Callable[[list[Prepared]], Awaitable[list[Scored]]]
        if self.run is not None:
            custom = self.run
            run = lambda chunk: custom(model_id, detector, chunk)  # noqa: E731
        else:
            run = in_thread(self.executor, score_prepared, detector)
        item_links = self.links
        scored = await score_capped(
            detector,
            config,
            [prepared[n] for n in misses],
            run,
            stage=self.stage,
            parent=parent,
            links=(lambda r: [item_links(items[misses[k]]) for k in r]) if item_links else None,
            observe=self.observe,
            failure_reason=self.failure_reason,
        )
        outcomes = {**hits, **dict(zip(misses, scored, strict=True))}
        # Read after scoring: a remote detector learns its version from its answers.
        version = detector.version
        out = []
        for n, item in enumerate(items):
            s = outcomes[n]
            verdict = None
            if s.score is not None:
                verdict = verdict_for(
                    item,
                    prepared[n],
                    s,
                    config=config,
                    model_version=version,
                    backend=backend,
                )
            out.append(ItemScore(item, prepared[n], s, verdict, cached=n in hits))
        return out
