"""While a service serves, what it loaded before is out of the cyclic collector's sight and
young collections wait for many more objects; both are undone when it stops."""

from __future__ import annotations

import gc

from deepfake_stream.core.collector import YOUNG_THRESHOLD, serving_collector


def test_loaded_objects_are_frozen_inside_and_collectable_after() -> None:
    loaded = [[i] for i in range(1_000)]  # stands for a model's long-lived objects
    with serving_collector("test"):
        assert gc.get_freeze_count() >= len(loaded)
        assert not any(o is loaded[0] for o in gc.get_objects())  # no generation walks it
        # A full collection leaves them frozen. (The frozen count itself may drop: reference
        # counting still frees frozen objects, e.g. other tests' leftovers in a full run.)
        gc.collect()
        assert not any(o is loaded[0] for o in gc.get_objects())
    assert gc.get_freeze_count() == 0  # back to the collector: a later service may free them
    assert any(o is loaded[0] for o in gc.get_objects())


def test_a_batch_of_allocations_runs_no_young_collection_and_the_default_comes_back() -> None:
    before = gc.get_threshold()
    young: list[int] = []
    gc.callbacks.append(lambda phase, info: phase == "start" and young.append(info["generation"]))
    try:
        with serving_collector("test"):
            assert gc.get_threshold() == (max(before[0], YOUNG_THRESHOLD), *before[1:])
            gc.collect(0)  # start from an empty young generation
            young.clear()
            batch = [{"item": i, "spans": [i]} for i in range(3_000)]  # 6,000 of a batch's objects
            assert len(batch) == 3_000 and young == []
    finally:
        gc.callbacks.pop()
    assert gc.get_threshold() == before
