"""Running services in-process against the real broker, and collecting what they produce."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from deepfake_stream.core.liveness import LivenessView, running_views
from deepfake_stream.core.reader import Arrival, read_topic
from deepfake_stream.core.settings import Settings
from deepfake_stream.core.topics import ensure_topics
from deepfake_stream.producers.client import DetectProducer

Service = Callable[[asyncio.Event], Awaitable[object]]


@asynccontextmanager
async def running(*services: Service) -> AsyncIterator[list[asyncio.Event]]:
    """Start services as tasks; on exit ask each to stop and wait for its clean exit."""
    stops = [asyncio.Event() for _ in services]
    tasks = [asyncio.create_task(svc(stop)) for svc, stop in zip(services, stops, strict=True)]
    try:
        yield stops
        for t in tasks:
            if t.done() and t.exception():
                raise t.exception()  # type: ignore[misc]
    finally:
        for s in stops:
            s.set()
        _, pending = await asyncio.wait(tasks, timeout=30)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def wait_live(
    settings: Settings, backend: str, model_id: str | None = None, timeout: float = 60.0
) -> None:
    """Until ``backend`` (serving ``model_id``) is live, as every view sees it.

    First a fresh view (services may run in other processes), then each view the in-process
    services started: their readers fetch on their own schedules, so the router may see a
    worker a fetch after this test does, and an item published in that gap would be routed
    as if the worker were not there.
    """
    await ensure_topics(settings)
    view = LivenessView(settings)
    await view.start()
    try:
        async with asyncio.timeout(timeout):
            while not view.alive(backend, model_id):
                await view.wait_changed(0.5)
    finally:
        await view.stop()
    await _until_services_see(settings, lambda v: v.alive(backend, model_id), timeout)


async def wait_not_live(
    settings: Settings, backend: str, model_id: str | None = None, timeout: float = 60.0
) -> None:
    """Until no in-process service's view counts ``backend`` (serving ``model_id``) live."""
    await _until_services_see(settings, lambda v: not v.alive(backend, model_id), timeout)


async def _until_services_see(
    settings: Settings, condition: Callable[[LivenessView], bool], timeout: float
) -> None:
    async with asyncio.timeout(timeout):
        while not all(condition(v) for v in running_views(settings.topics.heartbeats)):
            await asyncio.sleep(0.05)


async def publish(settings: Settings, docs: Iterable[dict | bytes]) -> None:
    await ensure_topics(settings)
    async with DetectProducer(settings=settings) as producer:
        for doc in docs:
            if isinstance(doc, bytes):
                await producer.send_raw(doc)
            else:
                await producer.send_raw(json.dumps(doc).encode(), key=str(doc.get("id")).encode())


@dataclass
class Results:
    verdicts: list[Arrival] = field(default_factory=list)
    dead: list[Arrival] = field(default_factory=list)

    def verdict_ids(self) -> set[str]:
        return {a.json()["id"] for a in self.verdicts}

    def by_id(self) -> dict[str, dict]:
        return {a.json()["id"]: a.json() for a in self.verdicts}


async def collect(
    settings: Settings, *, verdicts: int, dead: int = 0, timeout: float = 120.0, settle: float = 0.0
) -> Results:
    """Read both output topics from the beginning until the expected counts arrive (then
    ``settle`` seconds more, to catch extras), or the timeout."""
    results = Results()

    async def read(topic: str, sink: list[Arrival], want: int) -> None:
        if want == 0 and settle == 0:
            return
        async for a in read_topic(settings, topic, from_beginning=True, timeout=timeout):
            sink.append(a)
            if len(sink) >= want and settle == 0:
                return

    async def until_done() -> None:
        await asyncio.gather(
            read(settings.topics.verdicts, results.verdicts, verdicts),
            read(settings.topics.dlq, results.dead, dead),
        )

    if settle:

        async def settled() -> None:
            while len({a.key for a in results.verdicts}) < verdicts or len(results.dead) < dead:
                await asyncio.sleep(0.1)
            await asyncio.sleep(settle)

        task = asyncio.create_task(until_done())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settled(), timeout)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    else:
        await until_done()
    return results


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings."""
    import os

    from deepfake_stream.core.settings import all_fields, env_name

    env = dict(os.environ)
    for group, fld in all_fields():
        value = getattr(getattr(settings, group), fld)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[env_name(group, fld)] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli_command(*args: str) -> list[str]:
    from deepfake_stream.supervisor import console_command

    return [*console_command(), *args]
