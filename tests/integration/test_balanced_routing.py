"""Over the real broker, the router sends each item to the backend partition given the least
work so far (routing/balance.py), the worker scores what lands there, and the key is still the
item id."""

from __future__ import annotations

import random

import pytest

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.core.reader import read_topic
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.routing.service import serve_router
from deepfake_stream.text.windows import window_count
from tests.conftest import unique_settings
from tests.doubles import EchoDetector, register_doubles
from tests.integration.harness import collect, publish, running, wait_live

pytestmark = pytest.mark.integration

N = 60


async def test_a_burst_is_spread_by_cost_over_the_backend_partitions(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap)
    register_doubles()
    registry = registry_from_dict(
        {"models": {"m": {"kind": "echo", "size": "tiny", "version": "t1", "window_chars": 100}}},
        default_model="m",
        source="test",
    )
    spec = registry.models["m"].spec()
    rng = random.Random(3)
    docs = [{"id": f"b-{i}", "text": "w " * rng.randint(10, 400)} for i in range(N)]
    cost = {d["id"]: window_count(len(d["text"]), 100, settings.limits.max_windows) for d in docs}
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        lambda stop: serve_worker(
            settings, "cpu", registry=registry, detectors={"m": EchoDetector(spec)}, stop=stop
        ),
    ):
        await wait_live(settings, "cpu", "m")
        await publish(settings, docs)
        results = await collect(settings, verdicts=N, timeout=60)
        assert results.verdict_ids() == set(cost)
    backend = settings.topics.backend("cpu")
    given: dict[int, int] = {}
    seen = set()
    async for a in read_topic(settings, backend, from_beginning=True, count=N, timeout=30):
        assert a.key is not None and a.json()["id"] == a.key
        given[a.partition] = given.get(a.partition, 0) + cost[a.key]
        seen.add(a.key)
    assert seen == set(cost)
    assert len(given) == 12  # every partition of the backend topic got work
    assert max(given.values()) - min(given.values()) <= max(cost.values())
