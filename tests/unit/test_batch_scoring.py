"""The one batch scoring path (consumers/batch_scoring.py) that the worker, replay and the shim
share: group by model, cap, isolate a failing text, verdicts or errors, cached scores."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from deepfake_stream.consumers.batch_scoring import BatchScorer, group_by_model
from deepfake_stream.models.base import Detector, DetectorSpec
from deepfake_stream.models.registry import Registry, registry_from_dict
from deepfake_stream.schemas import InputItem, RoutedItem
from tests.doubles import EchoDetector, PoisonDetector


def _registry() -> Registry:
    models = {
        "m": {"kind": "echo", "size": "large", "version": "7", "max_batch_size": 2},
        "other": {"kind": "echo", "size": "small", "version": "1"},
    }
    return registry_from_dict({"models": models}, default_model="m", source="test")


def _item(i: int, model_id: str, text: str | None = None) -> RoutedItem:
    return RoutedItem.first_hop(
        InputItem(id=f"i{i}", text=text or f"text number {i}"),
        model_id=model_id,
        target="cpu",
        chain=[],
        first_seen_ms=0,
        trace={},
    )


def _score(
    detectors: dict[str, Detector],
    items: Sequence[RoutedItem],
    cached: dict[str, float] | None = None,
) -> list:  # type: ignore[type-arg]
    registry = _registry()

    async def detector_for(model_id: str) -> Detector:
        return detectors[model_id]

    async def from_cache(model_id: str, version: str, its: Sequence[RoutedItem]) -> list:  # type: ignore[type-arg]
        return [(cached or {}).get(i.text) for i in its]

    with ThreadPoolExecutor(1) as pool:
        scorer = BatchScorer(
            registry=registry,
            max_windows=8,
            executor=lambda: pool,
            detector_for=detector_for,
            stage="test",
            cached=from_cache if cached is not None else None,
        )
        return asyncio.run(scorer.score(items, backend="cpu"))


def _detector(cls: type, model_id: str) -> EchoDetector:
    d = cls(DetectorSpec(model_id=model_id, kind="echo", version="7"))
    asyncio.run(d.load())
    return d  # type: ignore[no-any-return]


def test_group_by_model_keeps_arrival_order() -> None:
    groups = group_by_model([("a", 1), ("b", 2), ("a", 3)], lambda e: e[0])
    assert groups == {"a": [("a", 1), ("a", 3)], "b": [("b", 2)]}


def test_a_micro_batch_is_grouped_by_model_and_capped_per_call() -> None:
    m, other = _detector(EchoDetector, "m"), _detector(EchoDetector, "other")
    items = [_item(0, "m"), _item(1, "other"), _item(2, "m"), _item(3, "m"), _item(4, "m")]
    out = _score({"m": m, "other": other}, items)
    assert [o.item.id for o in out] == ["i0", "i2", "i3", "i4", "i1"]  # by model, in order
    assert m.batches == [2, 2] and other.batches == [1]  # m's max_batch_size is 2
    assert all(o.verdict is not None for o in out)
    assert [o.verdict.batch_size for o in out] == [2, 2, 2, 2, 1]
    assert {o.verdict.model_id for o in out} == {"m", "other"}


def test_a_failing_text_is_isolated_and_its_neighbours_get_verdicts() -> None:
    m = _detector(PoisonDetector, "m")
    items = [_item(0, "m"), _item(1, "m", "a POISON text")]
    ok, bad = _score({"m": m, "other": m}, items)
    assert ok.verdict is not None and ok.verdict.id == "i0"
    assert bad.verdict is None and isinstance(bad.error, RuntimeError)


def test_a_cached_score_is_a_verdict_without_inference() -> None:
    m = _detector(EchoDetector, "m")
    items = [_item(0, "m", "cached text"), _item(1, "m")]
    hit, miss = _score({"m": m, "other": m}, items, cached={"cached text": 0.9})
    assert hit.cached and hit.verdict is not None and hit.verdict.score == 0.9
    assert hit.verdict.batch_size == 1
    assert not miss.cached and miss.verdict is not None
    assert m.batches == [1]  # only the miss was scored
