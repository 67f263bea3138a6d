"""In-process scoring through the same registry, routing decision and verdict as the stream.

For each request the shim validates the item exactly as the router does
(:func:`schemas.parse_input`), resolves the model in the same registry, and asks the same
routing rule (:func:`deepfake_stream.routing.decide.choose_route`, fed by the workers'
heartbeats) which backend the stream would pick. When that backend is one the shim can run
itself (``cpu``), it scores the text with its own copy of the detector, in a dedicated
inference thread, on the stream's own scoring path
(:mod:`deepfake_stream.consumers.batch_scoring`: normalisation, language, windows, capped
calls, verdict fields), so a text gets the same verdict whichever way it came in. When the
stream would send the item elsewhere (a live GPU worker or Modal), the shim hands it to the
stream (``via_stream``) instead. With no live worker at all it still answers, in-process, on
the first backend of the chain it can run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from deepfake_stream.consumers.batch_scoring import BatchScorer, in_thread, score_capped
from deepfake_stream.consumers.isolate import score_isolating
from deepfake_stream.core.errors import InvalidInput, UnknownModel
from deepfake_stream.core.settings import Settings
from deepfake_stream.models.base import Detector
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.operating_points import resolve_operating_point
from deepfake_stream.models.registry import ModelConfig, Registry
from deepfake_stream.routing.decide import candidates, choose_model, choose_route
from deepfake_stream.schemas import InputItem, RoutedItem, Verdict, parse_input
from deepfake_stream.schemas.http import DetectRequest, SentenceScore
from deepfake_stream.schemas.items import BackendName
from deepfake_stream.schemas.verdict import label_for
from deepfake_stream.shim import metrics
from deepfake_stream.shim.errors import ApiError
from deepfake_stream.text import word_count

log = logging.getLogger(__name__)

LOCAL_BACKENDS: tuple[BackendName, ...] = ("cpu",)
"""Backends whose detectors the shim runs itself (on this machine's CPU)."""
_STATUS_FOR_REASON = {"too_large": 413, "invalid_json": 422, "invalid_schema": 422}


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Where one item is scored: in-process as ``target`` would, or through the stream."""

    item: InputItem
    config: ModelConfig
    target: BackendName
    chain: tuple[BackendName, ...]
    via_stream: bool


class InProcessScorer:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        alive: Callable[[str, str], bool],
        detectors: dict[str, Detector] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._alive = alive
        self.detectors: dict[str, Detector] = dict(detectors or {})
        self._locks: dict[str, asyncio.Lock] = {}
        # One thread, as in a worker: detectors need not be thread-safe, and the event loop
        # keeps answering /healthz while a long text is scored.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shim-inference")

    async def start(self) -> None:
        """Load the default model up front, so the first request does not pay for it."""
        try:
            await self.detector_for(self.registry.resolve(None))
        except ApiError as exc:
            log.error("default model did not load: %s", exc.detail)

    async def stop(self) -> None:
        for detector in self.detectors.values():
            try:
                await detector.unload()
            except Exception as exc:  # shutting down: report, never hang
                log.warning("unloading %s failed: %s", detector.spec.model_id, exc)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def loaded(self) -> list[str]:
        return sorted(m for m, d in self.detectors.items() if d.ready)

    async def detector_for(self, config: ModelConfig) -> Detector:
        """The shim's own copy of a model's detector, loaded on first use."""
        detector = self.detectors.get(config.model_id)
        if detector is not None and detector.ready:
            return detector
        async with self._locks.setdefault(config.model_id, asyncio.Lock()):
            detector = self.detectors.get(config.model_id)
            if detector is None or not detector.ready:
                started = time.perf_counter()
                try:
                    detector = detector or build_detector(config.spec("cpu"))
                    await detector.load()
                except Exception as exc:
                    log.error("model %s failed to load in the shim: %s", config.model_id, exc)
                    raise ApiError(
                        503,
                        "model_unavailable",
                        f"model {config.model_id} could not be loaded ({type(exc).__name__})",
                    ) from None
                self.detectors[config.model_id] = detector
                log.info(
                    "model %s %s loaded in the shim in %.1fs",
                    config.model_id,
                    detector.version,
                    time.perf_counter() - started,
                )
            return detector

    def plan(self, request: DetectRequest, item_id: str, *, stream_ready: bool) -> Plan:
        """Validate as the router does and decide where the item is scored."""
        doc = {
            "id": item_id,
            "text": request.text,
            "model_id": request.model_id,
            "prefer_backend": request.prefer_backend,
            "operating_point": request.operating_point,
            "tenant": request.tenant,
            "metadata": request.metadata,
            "detail": request.detailed,
        }
        limits = self.settings.limits
        try:
            item = parse_input(
                json.dumps(doc).encode(),
                max_text_chars=limits.max_text_chars,
                max_message_bytes=limits.max_message_bytes,
                max_json_depth=limits.max_json_depth,
            )
            config = choose_model(self.registry, item.model_id, item.text)
            resolve_operating_point(config, item.operating_point)
        except InvalidInput as exc:
            raise ApiError(_STATUS_FOR_REASON.get(exc.reason, 422), exc.reason, str(exc)) from None
        except UnknownModel as exc:
            raise ApiError(404, "unknown_model", str(exc)) from None
        route = choose_route(config, item.prefer_backend, self._alive)
        if route is not None and route.target in LOCAL_BACKENDS:
            return Plan(
                item=item, config=config, target=route.target, chain=route.chain, via_stream=False
            )
        if route is not None and stream_ready:
            return Plan(
                item=item, config=config, target=route.target, chain=route.chain, via_stream=True
            )
        order = candidates(config, item.prefer_backend)
        local = [b for b in order if b in LOCAL_BACKENDS]
        if not local:
            raise ApiError(
                503,
                "no_backend",
                f"model {config.model_id} runs on {list(order)}: no worker there is live and "
                "the shim cannot run it itself",
            )
        at = order.index(local[0])
        return Plan(
            item=item, config=config, target=local[0], chain=order[at + 1 :], via_stream=False
        )

    def _observe(self, model_id: str, size: int, seconds: float) -> None:
        metrics.INFERENCE_SECONDS.labels(model_id).observe(seconds)

    @staticmethod
    def _raise_failed(model_id: str, errors: Sequence[BaseException | None]) -> None:
        for err in errors:
            message = " ".join(str(err).split())[:300]
            raise ApiError(
                502, "model_error", f"{model_id} failed: {type(err).__name__}: {message}"
            )

    async def score(
        self, plans: Sequence[Plan], *, first_seen_ms: int, trace: dict[str, str]
    ) -> list[Verdict]:
        """Verdicts for in-process plans of one model, scored together, in order, on the
        stream's own path (:class:`BatchScorer`). Each capped call is an ``infer <model>``
        span in the request's trace (``trace``: the shim span's carrier), as a worker's is."""
        if not plans:
            return []
        config = plans[0].config
        scorer = BatchScorer(
            registry=self.registry,
            max_windows=self.settings.limits.max_windows,
            executor=lambda: self._executor,
            detector_for=lambda _: self.detector_for(config),
            stage="shim",
            observe=self._observe,
            failure_reason="model_error",
        )
        routed = [
            RoutedItem.first_hop(
                plan.item,
                model_id=config.model_id,
                target=plan.target,
                chain=list(plan.chain),
                first_seen_ms=first_seen_ms,
                trace=trace,
            )
            for plan in plans
        ]
        # The verdict names the backend the stream would have used (the plan's target).
        outcomes = await scorer.score_group(
            config.model_id, routed, backend=plans[0].target, parent=trace
        )
        self._raise_failed(config.model_id, [o.scored.error for o in outcomes if o.verdict is None])
        return [o.verdict for o in outcomes if o.verdict is not None]

    async def sentences(
        self,
        text: str,
        config: ModelConfig,
        spans: Sequence[tuple[int, int]],
        trace: dict[str, str] | None = None,
    ) -> list[SentenceScore]:
        """Each sentence of ``text`` (``spans``, from :func:`sentence_spans`) scored on its
        own, with its character span."""
        if not spans:
            return []
        detector = await self.detector_for(config)
        outcomes = await score_capped(
            detector,
            config,
            [text[a:b] for a, b in spans],
            in_thread(lambda: self._executor, score_isolating, detector),
            stage="shim",
            parent=trace,
            observe=self._observe,
            failure_reason="model_error",
        )
        self._raise_failed(config.model_id, [o.error for o in outcomes if o.score is None])
        out = []
        for (a, b), outcome in zip(spans, outcomes, strict=True):
            assert outcome.score is not None  # _raise_failed raised on any failure
            score = float(outcome.score.score)
            # A sentence is judged as a verdict on a text of its length would be: under
            # min_words, at the default point's short texts' threshold where it has one.
            words = word_count(text[a:b])
            label = label_for(score, resolve_operating_point(config, None, words)[1])
            out.append(SentenceScore(start=a, end=b, text=text[a:b], score=score, label=label))
        return out
