"""One loaded copy per spec: the ensemble and a worker serving its members share weights."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from deepfake_stream.models.base import DetectorSpec
from deepfake_stream.models.shared import SharedDetectors
from tests.doubles import EchoDetector, register_doubles


class CountingDetector(EchoDetector):
    loads = 0
    unloads = 0

    async def load(self) -> None:
        await asyncio.sleep(0.01)  # a real load yields to the loop: let a second caller race
        type(self).loads += 1
        await super().load()

    async def unload(self) -> None:
        type(self).unloads += 1
        await super().unload()


@pytest.fixture
def spec() -> DetectorSpec:
    register_doubles()
    from deepfake_stream.models.kinds import register_kind

    register_kind("counting", CountingDetector)
    CountingDetector.loads = CountingDetector.unloads = 0
    return DetectorSpec(model_id="m", kind="counting", version="1", options={"a": 1})


async def test_concurrent_users_share_one_load_and_the_last_release_unloads(
    spec: DetectorSpec,
) -> None:
    pool = SharedDetectors()
    a, b = await asyncio.gather(pool.acquire(spec), pool.acquire(replace(spec)))
    assert a is b and a.ready
    assert CountingDetector.loads == 1 and pool.users(a) == 2
    await pool.release(a)
    assert a.ready and CountingDetector.unloads == 0
    await pool.release(b)
    assert not a.ready and CountingDetector.unloads == 1 and pool.users(a) == 0
    c = await pool.acquire(spec)  # after the last release: a fresh load
    assert c is not a and CountingDetector.loads == 2


async def test_different_options_or_device_are_different_copies(spec: DetectorSpec) -> None:
    pool = SharedDetectors()
    a = await pool.acquire(spec)
    assert await pool.acquire(replace(spec, options={"a": 2})) is not a
    assert await pool.acquire(replace(spec, device="cuda")) is not a


async def test_a_failed_load_is_not_cached(spec: DetectorSpec) -> None:
    pool = SharedDetectors()
    failing = replace(spec, kind="failing-load")
    from deepfake_stream.models.kinds import register_kind

    class FailingLoad(EchoDetector):
        async def load(self) -> None:
            raise RuntimeError("weights missing")

    register_kind("failing-load", FailingLoad)
    with pytest.raises(RuntimeError, match="weights missing"):
        await pool.acquire(failing)
    register_kind("failing-load", CountingDetector)  # fixed: the next acquire builds afresh
    assert (await pool.acquire(failing)).ready


async def test_a_detector_not_from_the_pool_is_simply_unloaded(spec: DetectorSpec) -> None:
    pool = SharedDetectors()
    own = CountingDetector(spec)
    await own.load()
    await pool.release(own)
    assert not own.ready and CountingDetector.unloads == 1


async def test_the_ensemble_shares_members_with_the_worker_that_serves_them(
    spec: DetectorSpec,
) -> None:
    """The real ensemble code and its committed stacker; its members are counting doubles
    registered under the members' ids, loaded the way a worker loads them."""
    from deepfake_stream.consumers.service import load_detectors
    from deepfake_stream.models.registry import load_with_retired, registry_from_dict

    shipped = load_with_retired().resolve("large-ensemble")
    members = ["tiny-tfidf", "small-perplexity", "medium-embedding"]
    doc = {
        "models": {
            **{m: {"kind": "counting", "size": "tiny", "version": "1"} for m in members},
            "large-ensemble": {
                "kind": "ensemble",
                "size": "large",
                "version": "1",
                "artifact": shipped.artifact,
                "backends": ["cpu"],
                "options": {"members": members},
            },
        }
    }
    registry = registry_from_dict(doc, default_model="tiny-tfidf", source="test")
    loaded = await load_detectors(registry, "cpu", "cpu")
    try:
        assert set(loaded) == {*members, "large-ensemble"}
        assert CountingDetector.loads == 3  # once each, not once for the worker + once more
        ensemble = loaded["large-ensemble"]
        for m in members:
            assert ensemble._members[members.index(m)] is loaded[m]  # type: ignore[attr-defined]
        (score,) = ensemble.predict_batch(["one shared text"])
        assert set(score.details) == set(members)
    finally:
        from deepfake_stream.models.shared import SHARED

        for d in reversed(list(loaded.values())):
            await SHARED.release(d)
    assert CountingDetector.unloads == 3
    assert not any(d.ready for d in loaded.values())
