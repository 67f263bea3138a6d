"""Verdict cache and de-duplication with the real Redis (127.0.0.1:6379) and the real broker.

Each test uses its own key prefix (REDIS_KEY_PREFIX) and deletes its keys afterwards. The
mid-run failure goes through a TCP proxy this test owns, so killing "Redis" never touches
anyone else's connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from deepfake_stream.consumers.redis_store import DedupKey, RedisStore, text_digest
from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.embedded_broker import free_port
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.producers.client import DetectProducer
from deepfake_stream.routing.service import serve_router
from tests.conftest import unique_settings
from tests.doubles import EchoDetector, register_doubles
from tests.integration.harness import collect, publish, running, wait_live
from tests.waiting import until

pytestmark = pytest.mark.integration
REDIS = "redis://127.0.0.1:6379/0"
VERSION = "r1+sha256:" + "0" * 12


@pytest.fixture
def prefix() -> Iterator[str]:
    try:
        client = redis.Redis.from_url(REDIS, socket_connect_timeout=1)
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS}: {exc}")
    name = f"test-{uuid.uuid4().hex[:8]}:dfs:v1"
    yield name
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def _setup(bootstrap: str, **redis_overrides: object):  # type: ignore[no-untyped-def]
    register_doubles()
    registry = registry_from_dict(
        {"models": {"m": {"kind": "echo", "size": "tiny", "version": "r1"}}},
        default_model="m",
        source="test",
    )
    overrides = {f"redis__{k}": v for k, v in redis_overrides.items()}
    settings = unique_settings(bootstrap, worker__max_wait_ms=50, **overrides)
    detector = EchoDetector(registry.models["m"].spec())
    services = (
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        lambda stop: serve_worker(
            settings, "cpu", registry=registry, detectors={"m": detector}, stop=stop
        ),
    )
    return settings, detector, services


def _inferred(detector: EchoDetector) -> int:
    return sum(detector.batches)


async def test_same_text_is_a_cache_hit_without_inference(
    kafka_bootstrap: str, prefix: str
) -> None:
    settings, detector, services = _setup(kafka_bootstrap, url=REDIS, key_prefix=prefix)
    async with running(*services):
        await wait_live(settings, "cpu", "m")
        await publish(settings, [{"id": "first", "text": "a text seen twice"}])
        await collect(settings, verdicts=1, timeout=30)
        assert _inferred(detector) == 1
        await publish(
            settings,
            [{"id": "second", "text": "a text seen twice"}, {"id": "other", "text": "new text"}],
        )
        results = await collect(settings, verdicts=3, timeout=30)
    by_id = results.by_id()
    assert _inferred(detector) == 2, "only the new text reached the detector"
    assert by_id["second"]["score"] == by_id["first"]["score"]
    assert by_id["second"]["label"] == by_id["first"]["label"]
    assert by_id["second"]["model_version"] == VERSION
    assert by_id["second"]["batch_size"] == 1  # a cache hit is not part of an inference batch
    client = redis.Redis.from_url(REDIS)
    cached = client.get(f"{prefix}:cache:{VERSION}:{text_digest('a text seen twice')}")
    assert cached is not None and b'"score"' in cached
    assert 0 < client.ttl(f"{prefix}:cache:{VERSION}:{text_digest('new text')}") <= 86_400
    key = DedupKey(None, "second", VERSION, text_digest("a text seen twice"))
    assert client.get(RedisStore(settings).published_key(key)) == b"1"
    client.close()


async def test_a_replayed_duplicate_is_not_published_again(
    kafka_bootstrap: str, prefix: str
) -> None:
    settings, detector, services = _setup(kafka_bootstrap, url=REDIS, key_prefix=prefix)
    async with running(*services):
        await wait_live(settings, "cpu", "m")
        await publish(settings, [{"id": "dup", "text": "scored once"}])
        await collect(settings, verdicts=1, timeout=30)
        # The same item again, as an upstream retry or a replay through detect.in would send it.
        async with DetectProducer(settings=settings) as producer:
            item = producer.validate(b'{"id": "dup", "text": "scored once"}')
            await producer.send_item(item, headers=[("deepfake.replay", b"true")])
            await producer.send_item(item)
        await publish(settings, [{"id": "sentinel", "text": "after the duplicates"}])
        results = await collect(settings, verdicts=2, settle=2.0, timeout=30)
    ids = [a.json()["id"] for a in results.verdicts]
    assert sorted(ids) == ["dup", "sentinel"], ids
    assert _inferred(detector) == 2


async def test_redis_unreachable_everything_still_works(kafka_bootstrap: str) -> None:
    dead_port = free_port()  # nothing listens there
    settings, detector, services = _setup(
        kafka_bootstrap, url=f"redis://127.0.0.1:{dead_port}/0", timeout_s=0.1
    )
    async with running(*services):
        await wait_live(settings, "cpu", "m")
        docs = [{"id": f"u-{i}", "text": f"text {i % 5}"} for i in range(30)]
        await publish(settings, docs)
        results = await collect(settings, verdicts=30, timeout=60)
    assert results.verdict_ids() == {d["id"] for d in docs}
    assert _inferred(detector) == 30  # no cache: every text scored


class RedisProxy:
    """A TCP proxy in front of the real Redis that can be cut (every connection closed) and
    restored, on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        await self._server.wait_closed()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextlib.asynccontextmanager
async def proxy_on_free_port() -> AsyncIterator[RedisProxy]:
    proxy = RedisProxy(free_port())
    await proxy.start()
    try:
        yield proxy
    finally:
        with contextlib.suppress(Exception):
            await proxy.cut()


async def test_redis_cut_mid_run_loses_nothing_and_comes_back(
    kafka_bootstrap: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="deepfake_stream.consumers.redis_store")
    async with proxy_on_free_port() as proxy:
        settings, detector, services = _setup(
            kafka_bootstrap,
            url=f"redis://127.0.0.1:{proxy.port}/0",
            key_prefix=prefix,
            timeout_s=0.2,
            retry_max_s=0.5,
        )

        def wave(tag: str, texts: str) -> list[dict]:
            return [{"id": f"{tag}-{i}", "text": f"{texts} text {i}"} for i in range(40)]

        async with running(*services):
            await wait_live(settings, "cpu", "m")
            await publish(settings, wave("w1", "first"))
            await collect(settings, verdicts=40, timeout=60)
            assert _inferred(detector) == 40

            def reconnections() -> int:
                return sum("redis is back" in r.getMessage() for r in caplog.records)

            # A loaded machine can miss the first ping at start and log a reconnection
            # already: wait for one after the cut, not for any.
            before = reconnections()
            publishing = asyncio.create_task(publish(settings, wave("w2", "second")))
            await asyncio.sleep(0.05)
            await proxy.cut()  # Redis goes away while wave 2 is in flight
            await publishing
            await collect(settings, verdicts=80, timeout=60)

            await proxy.start()  # back on the same port: the worker reconnects by itself
            await until(
                lambda: reconnections() > before,
                timeout=30,
                what="the worker to reconnect to Redis after the cut",
            )
            await publish(settings, wave("w3", "first"))
            results = await collect(settings, verdicts=120, timeout=60)
    expected = {f"{tag}-{i}" for tag in ("w1", "w2", "w3") for i in range(40)}
    assert results.verdict_ids() == expected  # nothing lost
    # Wave 2 was scored without Redis; wave 3 repeats wave 1's texts, and after the
    # reconnection they came from the cache: 40 + 40 + 0 texts reached the detector.
    assert _inferred(detector) == 80
    messages = [r.getMessage() for r in caplog.records]
    assert any("running without verdict cache" in m for m in messages), messages
    assert any("redis is back" in m for m in messages), messages
    scores = results.by_id()
    assert all(scores[f"w3-{i}"]["score"] == scores[f"w1-{i}"]["score"] for i in range(40))


async def test_store_calls_answer_unknown_when_redis_is_away() -> None:
    settings = unique_settings("127.0.0.1:9", redis__url=f"redis://127.0.0.1:{free_port()}/0")
    store = await RedisStore(settings).start()
    try:
        assert not store.available
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await store.cached_scores("v", ["a", "b"]) == [None, None]
        key = DedupKey(None, "id", "v", text_digest("a"))
        assert await store.already_published([key]) == [False]
        await store.cache_scores("v", "m", {"a": 0.5})
        await store.record_published([key])
        assert loop.time() - started < 0.1  # no waiting on a Redis that is not there
    finally:
        await store.stop()
