"""Operating points through the real broker: router, CPU worker and the real tiny-tfidf."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.routing.service import serve_router
from deepfake_stream.schemas import Verdict
from tests.conftest import unique_settings
from tests.integration.harness import collect, publish, running, wait_live

pytestmark = pytest.mark.integration

TEXT = "The committee will reconvene next week to review the proposal in detail."
# Thresholds that bracket every score, so the label can only come from the operating point.
POINTS = {
    "strict": {"threshold": 1.0, "target_fpr": 0.001},
    "balanced": {"threshold": 0.5, "target_fpr": 0.01},
    "sensitive": {"threshold": 0.0, "target_fpr": 0.05},
}
BANDS = {"ai_high": 0.0, "ai_medium": 0.0, "human_high": 1.0, "human_medium": 1.0}


def tiny_registry(tmp_path: Path, bands: dict[str, float] = BANDS) -> Path:
    """A registry whose only model is the real tiny-tfidf at the test's operating points."""
    path = tmp_path / "models.yaml"
    entry = {
        "kind": "tfidf",
        "size": "tiny",
        "version": "2026.11.1",
        "artifact": "tiny-tfidf",
        "operating_points": POINTS,
        "default_operating_point": "balanced",
        "confidence": bands,
        "min_words": 0,  # the short TEXT is not "too short" here: its confidence is the band's
    }
    path.write_text(yaml.safe_dump({"models": {"tiny-tfidf": entry}}))
    return path


async def test_label_follows_the_operating_point_and_an_unknown_one_is_dead_lettered(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = unique_settings(kafka_bootstrap, models__config=str(tiny_registry(tmp_path)))
    docs = [
        {"id": "op-strict", "text": TEXT, "operating_point": "strict"},
        {"id": "op-sensitive", "text": TEXT, "operating_point": "sensitive"},
        {"id": "op-default", "text": TEXT},
        {"id": "op-unknown", "text": TEXT, "operating_point": "paranoid"},
        {"id": "op-float", "text": TEXT, "operating_point": 0.3},
    ]
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        await wait_live(settings, "cpu", "tiny-tfidf")
        await publish(settings, docs)
        results = await collect(settings, verdicts=3, dead=2, timeout=120)
    by_id = {k: Verdict.model_validate(v) for k, v in results.by_id().items()}
    assert set(by_id) == {"op-strict", "op-sensitive", "op-default"}
    strict, sensitive, default = by_id["op-strict"], by_id["op-sensitive"], by_id["op-default"]
    assert (strict.operating_point, strict.threshold, strict.label) == ("strict", 1.0, "human")
    assert (sensitive.operating_point, sensitive.threshold, sensitive.label) == (
        "sensitive",
        0.0,
        "ai",
    )
    assert sensitive.is_fake and not strict.is_fake
    assert default.operating_point == "balanced" and default.threshold == 0.5
    assert default.label == ("ai" if default.score >= 0.5 else "human")
    # The bands here make every verdict high (the edges sit at the ends of the scale).
    assert {v.confidence for v in by_id.values()} == {"high"}
    letters = {a.key: a.headers for a in results.dead}
    assert set(letters) == {"op-unknown", "op-float"}
    assert all(h["dlq.reason"] == "invalid_schema" for h in letters.values())
    assert all(h["dlq.stage"] == "router" for h in letters.values())
    assert "paranoid" in letters["op-unknown"]["dlq.error.message"]
