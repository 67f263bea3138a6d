"""What a service loaded before its stage runs is out of the cyclic collector's sight."""

from __future__ import annotations

import gc

from deepfake_stream.core.collector import startup_frozen


def test_loaded_objects_are_frozen_inside_and_collectable_after() -> None:
    loaded = [[i] for i in range(1_000)]  # stands for a model's long-lived objects
    assert gc.get_freeze_count() == 0
    with startup_frozen("test"):
        frozen = gc.get_freeze_count()
        assert frozen >= len(loaded)
        assert not any(o is loaded[0] for o in gc.get_objects(2))  # no generation walks it
        made_later = [[1]]
        gc.collect()
        assert gc.get_freeze_count() == frozen  # a full collection leaves them frozen
        assert made_later[0] == [1]
    assert gc.get_freeze_count() == 0  # back to the collector: a later service may free them
