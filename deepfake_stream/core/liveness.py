"""Backend liveness: workers announce themselves on a Kafka topic; routers and workers read it.

Why a topic and not Redis: Redis is optional (REDIS_URL may be unset), Kafka never is. Each
worker publishes a small JSON heartbeat to ``detect.heartbeats`` every
``WORKER_HEARTBEAT_INTERVAL_S`` (key = worker id) naming its backend and the models it has
loaded; a backend counts as live for a model while some worker's latest heartbeat for it is
younger than its time-to-live (``WORKER_HEARTBEAT_TTL_S``). A worker that stops cleanly
publishes ``state: leaving`` so routing moves away at once instead of after the TTL.
Readers consume the topic without a consumer group, from the earliest retained offset, so a
restarted router knows the live workers within one fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import BaseModel, ConfigDict, Field, field_validator

from deepfake_stream.core.kafka import make_consumer
from deepfake_stream.core.settings import Backend, Settings

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


# The one definition: workers publish it, readers parse it, the AsyncAPI document shows it.
class Heartbeat(BaseModel):
    """A worker's liveness announcement (key: the worker id). A backend is live for a model
    while some worker's latest heartbeat naming it is younger than its ``ttl_ms``."""

    model_config = ConfigDict(frozen=True)

    worker_id: str
    backend: Backend
    models: tuple[str, ...] = Field(default_factory=tuple)
    """Models this worker has loaded and serves."""
    ts_ms: int
    """Epoch milliseconds of the announcement."""
    ttl_ms: int
    """How long the announcement counts (WORKER_HEARTBEAT_TTL_S)."""
    state: Literal["alive", "leaving"] = "alive"
    """``leaving``: the worker is stopping; route elsewhere at once."""
    host: str = ""
    pid: int = 0

    @field_validator("models", mode="before")
    @classmethod
    def _no_models(cls, models: object) -> object:
        return () if models is None else models

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, raw: bytes) -> Heartbeat:
        """Raises a ValueError (pydantic's ValidationError) on anything malformed."""
        return cls.model_validate_json(raw)

    def live_at(self, t_ms: int) -> bool:
        return self.state == "alive" and t_ms < self.ts_ms + self.ttl_ms


# The views started in this process and not yet stopped. Each reader fetches on its own
# schedule, so two views of one topic can disagree for a fetch; code that must know what the
# router itself sees (in-process tests) asks these views rather than a fresh one.
_RUNNING: weakref.WeakSet[LivenessView] = weakref.WeakSet()


def running_views(topic: str) -> list[LivenessView]:
    """The started views in this process that read heartbeats from ``topic``."""
    return [v for v in list(_RUNNING) if v.topic == topic]


class LivenessView:
    """The latest heartbeat of every worker, kept fresh by a background reader task."""

    def __init__(self, settings: Settings, *, clock: Callable[[], int] = now_ms) -> None:
        self._settings = settings
        self._clock = clock
        self._latest: dict[str, Heartbeat] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.read_errors = 0
        """Failed polls of the heartbeat topic (each one retried)."""

    @property
    def topic(self) -> str:
        return self._settings.topics.heartbeats

    def observe(self, hb: Heartbeat) -> None:
        old = self._latest.get(hb.worker_id)
        if old is None or hb.ts_ms >= old.ts_ms:
            self._latest[hb.worker_id] = hb
            self._changed.set()

    def alive(self, backend: str, model_id: str | None = None) -> bool:
        t = self._clock()
        return any(
            hb.backend == backend and hb.live_at(t) and (model_id is None or model_id in hb.models)
            for hb in self._latest.values()
        )

    def live_backends(self) -> dict[str, list[str]]:
        """backend → sorted models with at least one live worker (for logs, /readyz)."""
        t = self._clock()
        out: dict[str, set[str]] = {}
        for hb in self._latest.values():
            if hb.live_at(t):
                out.setdefault(hb.backend, set()).update(hb.models)
        return {b: sorted(m) for b, m in sorted(out.items())}

    def first_alive(self, backends: Iterable[Backend], model_id: str) -> Backend | None:
        return next((b for b in backends if self.alive(b, model_id)), None)

    async def wait_changed(self, timeout: float) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def start(self) -> None:
        consumer = await self._open()
        self._task = asyncio.create_task(self._read(consumer), name="liveness-reader")
        _RUNNING.add(self)

    async def _open(self) -> AIOKafkaConsumer:
        """A consumer of every heartbeat partition, without a group.

        Normally the topic exists (every service creates the topics before it starts its
        view), and its partitions are assigned explicitly: no metadata refresh is needed to
        find them. A view started before the topic exists subscribes instead, refreshing
        metadata every 2 s (without a group, new partitions are only seen on a refresh, 5 min
        by default, and a starting worker must be seen within seconds). Those refreshes cost
        every idle view a request to the broker every 2 s, which is why they are not the
        default."""
        consumer = await self._started(metadata_max_age_ms=300_000)
        partitions = consumer.partitions_for_topic(self.topic)
        if partitions:
            consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
            return consumer
        await _stop_quietly(consumer)
        consumer = await self._started(metadata_max_age_ms=2_000)
        consumer.subscribe([self.topic])
        return consumer

    async def _started(self, *, metadata_max_age_ms: int) -> AIOKafkaConsumer:
        consumer = make_consumer(
            self._settings,
            group_id=None,
            role="liveness",
            metadata_max_age_ms=metadata_max_age_ms,
            # Heartbeats come WORKER_HEARTBEAT_INTERVAL_S apart (2 s) and a backend is dead
            # only after WORKER_HEARTBEAT_TTL_S (10 s): seeing each beat within one interval
            # is enough, and every shorter wait is one more idle poll of this reader and of
            # the broker (a view in the router, the shim, `up` and every worker).
            fetch_max_wait_ms=max(100, int(self._settings.worker.heartbeat_interval_s * 1000)),
        )
        try:
            await consumer.start()
        except BaseException:
            await _stop_quietly(consumer)
            raise
        return consumer

    async def _read(self, consumer: AIOKafkaConsumer | None) -> None:
        """Reads until cancelled. A failed poll must not end it (every backend would then
        look dead once the TTLs ran out): the consumer is replaced, with a back-off bounded
        by ``WORKER_LIVENESS_RETRY_MAX_S``; re-reading from the earliest heartbeat is
        harmless, the latest per worker wins."""
        backoff = 0.1
        try:
            while True:
                try:
                    if consumer is None:
                        consumer = await self._open()
                        log.info("liveness reader reconnected")
                    batches = await consumer.getmany(timeout_ms=500)
                except Exception as exc:
                    self.read_errors += 1
                    log.warning(
                        "liveness reader failed (%s: %s); reconnecting in %.1fs",
                        type(exc).__name__,
                        exc,
                        backoff,
                    )
                    if consumer is not None:
                        await _stop_quietly(consumer)
                        consumer = None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._settings.worker.liveness_retry_max_s)
                    continue
                backoff = 0.1
                for records in batches.values():
                    for record in records:
                        try:
                            self.observe(Heartbeat.decode(record.value))
                        except (ValueError, KeyError, TypeError):
                            log.warning("ignoring malformed heartbeat at offset %s", record.offset)
        finally:
            if consumer is not None:
                await _stop_quietly(consumer)

    async def stop(self) -> None:
        _RUNNING.discard(self)
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.stop()
    except Exception as exc:  # already broken: nothing more to release
        log.debug("stopping the liveness consumer failed (%s: %s)", type(exc).__name__, exc)
    except asyncio.CancelledError:
        # aiokafka re-raises the cancellation of its own offset task when a consumer stops
        # before that task first ran (stopped right after start); only ours must propagate.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


class HeartbeatPublisher:
    """Announces one worker until stopped; the last announcement says it is leaving."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        *,
        backend: str,
        models: Callable[[], Iterable[str]],
    ) -> None:
        self._settings = settings
        self._producer = producer
        self.backend = backend
        self._models = models
        self.worker_id = f"{backend}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._task: asyncio.Task[None] | None = None
        self._soon = asyncio.Event()

    def beat_soon(self) -> None:
        """Announce now rather than at the next interval (the advertised models changed)."""
        self._soon.set()

    def _beat(self, state: Literal["alive", "leaving"]) -> Heartbeat:
        return Heartbeat(
            worker_id=self.worker_id,
            backend=self.backend,
            models=tuple(sorted(self._models())),
            ts_ms=now_ms(),
            ttl_ms=int(self._settings.worker.heartbeat_ttl_s * 1000),
            state=state,
            host=socket.gethostname(),
            pid=os.getpid(),
        )

    async def publish(self, state: Literal["alive", "leaving"] = "alive") -> None:
        await self._producer.send_and_wait(
            self._settings.topics.heartbeats,
            self._beat(state).encode(),
            key=self.worker_id.encode(),
        )

    async def start(self) -> None:
        await self.publish()
        self._task = asyncio.create_task(self._loop(), name="heartbeat")

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._soon.wait(), self._settings.worker.heartbeat_interval_s
                )
            self._soon.clear()
            try:
                await self.publish()
            except Exception as exc:  # a missed beat is not fatal; the TTL covers a few
                log.warning("heartbeat failed: %s", exc)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await asyncio.wait_for(self.publish("leaving"), 5)
        except Exception as exc:
            log.warning("could not announce leaving: %s", exc)
