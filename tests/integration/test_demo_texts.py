"""The demo texts `make run` publishes get the answers they should from the model they name:
what a new user sees first must not be a wall of wrong verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepfake_stream.core.settings import load_settings
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.registry import load_registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # loads every demo model, SmolLM2 too
DEMO = Path(__file__).resolve().parents[2] / "deepfake_stream" / "demo.jsonl"


async def test_demo_texts_get_the_labels_of_who_wrote_them() -> None:
    items = [json.loads(line) for line in DEMO.read_text().splitlines() if line.strip()]
    assert {i["metadata"]["written_by"] for i in items} == {"human", "ai"}
    settings = load_settings({})
    registry = load_registry(settings.models.config, default_model=settings.models.default)
    by_model: dict[str, list[dict]] = {}
    for item in items:
        by_model.setdefault(item.get("model_id") or registry.default_model, []).append(item)
    for model_id, group in by_model.items():
        config = registry.resolve(model_id)
        detector = build_detector(config.spec("cpu"))
        await detector.load()
        try:
            scores = detector.predict_batch([i["text"] for i in group])
        finally:
            await detector.unload()
        for item, score in zip(group, scores, strict=True):
            label = "ai" if score.score >= config.threshold else "human"
            assert label == item["metadata"]["written_by"], (item["id"], score.score)
