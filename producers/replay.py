"""Re-scoring history (``deepfake-stream replay``).

Items from ``detect.in`` (by offsets, time range or ids) are re-scored in this process with
the registry's detector, exactly as a worker scores them (same verdict builder), and the
verdicts go to ``detect.verdicts`` or a shadow topic with ``replay: true`` and the model
version that scored them. Scoring in-process is what lets ``--output-topic`` and
``--only-changed`` work, and keeps a replay's load off the live workers' topics.

Dead letters (``--dlq``) are different: their cause was somewhere in the pipeline (an
unknown model since registered, a backend that was down), so their original bytes are
re-injected into ``detect.in`` with the ``deepfake.replay: true`` header, and the live
pipeline scores them (the router copies the header into ``routing.replay``).

Revisions: a re-score whose label or confidence differs from the item's last verdict on the
verdicts topic (the verdict downstream systems acted on) carries ``revises``: that verdict's
``model_version`` and ``scored_at``, so they can undo or redo their action. The replay knows
the last verdict of each (id, model_id) by reading the verdicts topic from its beginning
before it starts (memory grows with the distinct ids there; ~100 bytes each). The topic is
the record, so this needs no Redis (whose cache holds scores, not verdicts, and may be
evicted). ``--only-changed`` compares against the output topic the same way, and publishes
only re-scores whose label or confidence changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from tqdm import tqdm

from deepfake_stream.consumers.batch_scoring import BatchScorer
from deepfake_stream.consumers.redis_store import DedupKey, RedisStore
from deepfake_stream.core.errors import ConfigError, DlqReason, InvalidInput, UnknownModel
from deepfake_stream.core.kafka import make_producer, wait_for_broker
from deepfake_stream.core.liveness import now_ms
from deepfake_stream.core.settings import Settings
from deepfake_stream.core.stage import Outgoing
from deepfake_stream.core.topics import ensure_topics, load_topic_definitions
from deepfake_stream.core.tracing import (
    CORRELATION_HEADER,
    TRACE_HEADERS,
    trace_from_headers,
    trace_headers,
)
from deepfake_stream.models.base import Detector
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.operating_points import resolve_operating_point
from deepfake_stream.models.registry import Registry
from deepfake_stream.producers.scan import Scan, Selection
from deepfake_stream.routing.decide import choose_model
from deepfake_stream.schemas import (
    BackendName,
    InputItem,
    Revision,
    RoutedItem,
    Verdict,
    parse_input,
)
from deepfake_stream.schemas.dead_letter import dead_letter

log = logging.getLogger(__name__)
REPLAY_HEADER = ("deepfake.replay", b"true")


@dataclass(kw_only=True)
class ReplayOptions:
    model: str | None = None
    """Target model for every item (default: each item's own model_id, or the default)."""
    model_version: str | None = None
    """Refuse to run unless the loaded model has this version (full, or its release part)."""
    output_topic: str | None = None
    """Where verdicts go (default: the verdicts topic)."""
    only_changed: bool = False
    rate: float | None = None
    """Items per second ceiling."""
    count: int | None = None
    timeout: float | None = None
    progress: bool = True


@dataclass
class ReplaySummary:
    mode: str = "rescore"
    in_range: int = 0
    """Messages in the offset range(s) looked at."""
    read: int = 0
    """Messages selected for replay."""
    rescored: int = 0
    changed: int | None = None
    """Verdicts whose label or confidence differs from the last known one (only with
    --only-changed)."""
    new: int | None = None
    """Items with no earlier verdict known (only with --only-changed)."""
    published: int = 0
    reinjected: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0
    model_versions: dict[str, str] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "items_per_s": round(self.rate, 2)}

    def lines(self) -> list[str]:
        done = (
            f"re-injected into the input topic {self.reinjected}"
            if self.mode == "dlq"
            else f"re-scored {self.rescored}, published {self.published}"
        )
        changed = "-" if self.changed is None else f"{self.changed} (+{self.new} new)"
        return [
            f"replay summary ({self.mode}): items read {self.read} of {self.in_range} in range; "
            f"{done}; changed {changed}; dead-lettered {self.dead_lettered}",
            f"took {self.seconds:.1f}s ({self.rate:.1f} items/s); "
            f"model versions {self.model_versions or '-'}",
        ]


class _Pacer:
    """Never lets item k start before k / rate seconds into the run."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.started = time.monotonic()

    def wait_for(self, k: int) -> float:
        if not self.rate:
            return 0.0
        return max(0.0, k / self.rate - (time.monotonic() - self.started))


@dataclass(frozen=True, slots=True)
class Earlier:
    """What a replay needs of an item's last verdict."""

    label: str
    confidence: str | None
    model_version: str
    scored_at: str

    def differs(self, verdict: Verdict) -> bool:
        return (self.label, self.confidence) != (verdict.label, verdict.confidence)

    @classmethod
    def of(cls, verdict: Verdict) -> Earlier:
        return cls(verdict.label, verdict.confidence, verdict.model_version, verdict.scored_at)


async def last_verdicts(settings: Settings, topic: str) -> dict[tuple[str, str], Earlier]:
    """The latest verdict per (id, model_id) on a verdicts topic, up to its current end."""
    last: dict[tuple[str, str], Earlier] = {}
    async with Scan(settings, topic, Selection(), missing_ok=True) as scan:
        async for r in scan.records():
            try:
                v = json.loads(r.value or b"")
                last[(str(v["id"]), str(v["model_id"]))] = Earlier(
                    str(v["label"]),
                    v.get("confidence"),
                    str(v["model_version"]),
                    str(v["scored_at"]),
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    return last


class Replayer:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        options: ReplayOptions,
        *,
        detectors: dict[str, Detector] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.options = options
        self.output = options.output_topic or settings.topics.verdicts
        self.detectors: dict[str, Detector] = dict(detectors or {})
        self._owned: list[Detector] = []
        self.device = settings.worker.device or "cpu"
        self.backend: BackendName = "gpu" if self.device.startswith("cuda") else "cpu"
        self.summary = ReplaySummary()
        self.known: dict[tuple[str, str], Earlier] | None = None
        """Last verdicts on the output topic (only with --only-changed)."""
        self.earlier: dict[tuple[str, str], Earlier] = {}
        """Last verdicts on the verdicts topic: what a re-score ``revises``."""
        if options.model is not None:
            registry.resolve(options.model)  # unknown target model: refuse before reading

    async def _detector(self, model_id: str) -> Detector:
        detector = self.detectors.get(model_id)
        if detector is None:
            config = self.registry.models[model_id]
            detector = build_detector(config.spec(self.device))
            await detector.load()
            self.detectors[model_id] = detector
            self._owned.append(detector)
        elif not detector.ready:
            await detector.load()
        pin = self.options.model_version
        if pin and pin not in (detector.version, detector.version.split("+")[0]):
            raise ConfigError(
                f"--model-version {pin} does not match the loaded {model_id} "
                f"({detector.version}); deploy that artifact or drop the pin"
            )
        self.summary.model_versions[model_id] = detector.version
        return detector

    async def close(self) -> None:
        for d in self._owned:
            await d.unload()

    # -- detect.in: re-score in-process -----------------------------------------------------
    async def rescore(self, selection: Selection) -> ReplaySummary:
        opts = self.options
        if opts.model is not None:  # load (and check the pin) before reading anything
            await self._detector(opts.model)
        self.earlier = await last_verdicts(self.settings, self.settings.topics.verdicts)
        if opts.only_changed:
            same = self.output == self.settings.topics.verdicts
            self.known = self.earlier if same else await last_verdicts(self.settings, self.output)
            self.summary.changed = self.summary.new = 0
        store = (
            await RedisStore(self.settings).start()
            if self.output == (self.settings.topics.verdicts)
            else None
        )
        producer = make_producer(self.settings, role="replay")
        await producer.start()
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="replay-inference") as executor:
                await self._run(selection, self.settings.topics.input, producer, executor, store)
        finally:
            await producer.stop()
            if store is not None:
                await store.stop()
        return self.summary

    async def _run(
        self,
        selection: Selection,
        topic: str,
        producer: AIOKafkaProducer,
        executor: ThreadPoolExecutor | None,
        store: RedisStore | None,
    ) -> None:
        opts, summary = self.options, self.summary
        started = time.monotonic()
        deadline = started + opts.timeout if opts.timeout else None
        pacer = _Pacer(opts.rate)
        batch: list[ConsumerRecord] = []
        cap = self.settings.worker.max_batch_size
        async with Scan(self.settings, topic, selection) as scan:
            bar = tqdm(total=scan.total, unit="msg", desc="replay", disable=not opts.progress)
            try:
                async for record in scan.records(deadline=deadline):
                    if opts.count is not None and summary.read >= opts.count:
                        break
                    wait = pacer.wait_for(summary.read)
                    if wait > 0 or len(batch) >= cap:
                        await self._flush(batch, producer, executor, store)
                        batch = []
                        await asyncio.sleep(wait)
                    summary.read += 1
                    batch.append(record)
                    self._tick(bar, scan)
                await self._flush(batch, producer, executor, store)
                self._tick(bar, scan)
                summary.in_range = scan.total
            finally:
                bar.close()
        summary.seconds = time.monotonic() - started

    def _tick(self, bar: tqdm, scan: Scan) -> None:
        bar.total = scan.total  # exact once each partition's end is known
        bar.set_postfix(self._postfix(), refresh=False)
        bar.update(scan.scanned - bar.n)  # tqdm throttles the redraws

    def _postfix(self) -> dict[str, int]:
        s = self.summary
        if s.mode == "dlq":
            return {"re-injected": s.reinjected, "dead": s.dead_lettered}
        return {"rescored": s.rescored, "published": s.published, "dead": s.dead_lettered}

    async def _flush(
        self,
        records: Sequence[ConsumerRecord],
        producer: AIOKafkaProducer,
        executor: ThreadPoolExecutor | None,
        store: RedisStore | None,
    ) -> None:
        if not records:
            return
        if executor is None:  # --dlq: re-inject the original bytes
            out = [self._reinject(r) for r in records]
            self.summary.reinjected += len(out)
        else:
            out = await self._score(records, executor)
        futures = [await producer.send(o.topic, o.value, key=o.key, headers=o.headers) for o in out]
        await asyncio.gather(*futures)  # acked (acks=all) before anything is recorded
        published = [
            DedupKey(v["tenant"], v["id"], v["model_version"], v["text_sha256"])
            for v in (
                json.loads(o.value)
                for o in out
                if o.topic == self.settings.topics.verdicts and executor is not None
            )
        ]
        if store is not None and published:
            await store.record_published(published)

    def _reinject(self, record: ConsumerRecord) -> Outgoing:
        carried = [(k, v) for k, v in (record.headers or ()) if k in TRACE_HEADERS]
        return Outgoing(
            topic=self.settings.topics.input,
            value=record.value or b"",
            key=record.key,
            headers=[*carried, REPLAY_HEADER],
        )

    async def _score(
        self, records: Sequence[ConsumerRecord], executor: ThreadPoolExecutor
    ) -> list[Outgoing]:
        out: list[Outgoing] = []
        routed: list[tuple[ConsumerRecord, RoutedItem]] = []
        limits = self.settings.limits
        for record in records:
            try:
                item = parse_input(
                    record.value,
                    max_text_chars=limits.max_text_chars,
                    max_message_bytes=limits.max_message_bytes,
                    max_json_depth=limits.max_json_depth,
                )
                config = choose_model(self.registry, self.options.model or item.model_id, item.text)
                resolve_operating_point(config, item.operating_point)
            except (InvalidInput, UnknownModel) as exc:
                out.append(self._dead(record, exc.reason, exc))
                continue
            routed.append((record, self._routed(record, item, config.model_id)))
        record_of = {id(i): r for r, i in routed}
        scorer = self._scorer(executor)
        outcomes = await scorer.score([i for _, i in routed], backend=self.backend)
        for outcome in outcomes:
            record, item, verdict = record_of[id(outcome.item)], outcome.item, outcome.verdict
            model_id = item.routing.model_id
            if verdict is None:
                out.append(self._dead(record, "model_error", outcome.error))
                continue
            self.summary.rescored += 1
            key = (item.id, model_id)
            earlier = self.earlier.get(key)
            if earlier is not None and earlier.differs(verdict):
                revises = Revision(model_version=earlier.model_version, scored_at=earlier.scored_at)
                verdict = verdict.model_copy(update={"revises": revises})
            if self.known is not None:
                before = self.known.get(key)
                if before is None:
                    self.summary.new = (self.summary.new or 0) + 1
                elif before.differs(verdict):
                    self.summary.changed = (self.summary.changed or 0) + 1
                else:
                    continue  # --only-changed: same label and confidence as the last one
                self.known[key] = Earlier.of(verdict)
            if self.output == self.settings.topics.verdicts:
                self.earlier[key] = Earlier.of(verdict)  # a later duplicate revises this one
            self.summary.published += 1
            out.append(
                Outgoing(
                    topic=self.output,
                    value=verdict.model_dump_json().encode(),
                    key=item.id.encode(),
                    headers=[*trace_headers(item.routing.trace), REPLAY_HEADER],
                )
            )
        return out

    def _scorer(self, executor: ThreadPoolExecutor) -> BatchScorer:
        """The shared scoring path, scoring with this replay's own detectors in its thread."""
        return BatchScorer(
            registry=self.registry,
            max_windows=self.settings.limits.max_windows,
            executor=lambda: executor,
            detector_for=self._detector,
            stage="replay",
            failure_reason="model_error",
        )

    def _routed(self, record: ConsumerRecord, item: InputItem, model_id: str) -> RoutedItem:
        return RoutedItem.first_hop(
            item,
            model_id=model_id,
            target=self.backend,
            chain=[],
            first_seen_ms=now_ms(),  # latency_ms measures the replay, not the history
            # Its trace continues, but a replay answers no ?via=stream request.
            trace={
                k: v
                for k, v in trace_from_headers(record.headers).items()
                if k != CORRELATION_HEADER
            },
            replay=True,
        )

    def _dead(
        self, record: ConsumerRecord, reason: DlqReason, error: BaseException | str
    ) -> Outgoing:
        self.summary.dead_lettered += 1
        return dead_letter(
            record,
            topic=self.settings.topics.dlq,
            reason=reason,
            stage="replay",
            error=error,
            max_bytes=self.settings.kafka.max_request_bytes,
        )

    # -- detect.dlq: re-inject ----------------------------------------------------------------
    async def reinject_dead_letters(self, selection: Selection) -> ReplaySummary:
        self.summary.mode = "dlq"
        producer = make_producer(self.settings, role="replay")
        await producer.start()
        try:
            await self._run(selection, self.settings.topics.dlq, producer, None, None)
        finally:
            await producer.stop()
        return self.summary


async def replay(
    settings: Settings,
    selection: Selection,
    options: ReplayOptions,
    *,
    dlq: bool = False,
    registry: Registry | None = None,
    detectors: dict[str, Detector] | None = None,
) -> ReplaySummary:
    """Run one replay to its end (or ``count``/``timeout``) and return its summary."""
    from deepfake_stream.models.registry import registry_for

    await wait_for_broker(settings)
    definitions = load_topic_definitions(topics=settings.topics)
    output = options.output_topic
    if output and output not in {d.name for d in definitions}:
        # A separate output topic is made like the verdicts topic, before the first produce:
        # left to auto-creation, the first sends can fail with NotLeaderForPartition.
        verdicts = next(d for d in definitions if d.name == settings.topics.verdicts)
        definitions.append(replace(verdicts, name=output, setting="replay_output"))
    await ensure_topics(settings, definitions=definitions)
    replayer = Replayer(settings, registry or registry_for(settings), options, detectors=detectors)
    try:
        if dlq:
            return await replayer.reinject_dead_letters(selection)
        return await replayer.rescore(selection)
    finally:
        await replayer.close()
