"""The shim takes `operating_point` as the stream does: documented ones only."""

from __future__ import annotations

from pathlib import Path

from deepfake_stream.schemas import Verdict
from tests.integration.test_operating_points import tiny_registry
from tests.unit.test_shim import TEXT, assert_error, make_client


def test_operating_point_on_the_shim(tmp_path: Path) -> None:
    bands = {"ai_high": 0.999, "ai_medium": 0.99, "human_high": 0.0, "human_medium": 0.0}
    registry = tiny_registry(tmp_path, bands)
    with make_client(models__config=str(registry)) as client:
        strict = Verdict.model_validate(
            client.post("/v1/detect", json={"text": TEXT, "operating_point": "strict"}).json()
        )
        sensitive = client.post("/v1/detect", json={"text": TEXT, "operating_point": "sensitive"})
        default = Verdict.model_validate(client.post("/v1/detect", json={"text": TEXT}).json())
        assert (strict.operating_point, strict.threshold, strict.label) == ("strict", 1.0, "human")
        assert sensitive.json()["label"] == "ai" and sensitive.json()["threshold"] == 0.0
        assert default.operating_point == "balanced" and default.threshold == 0.5
        # human_high at 0: no human verdict is high; a score under 0.99 is a low ai verdict.
        assert strict.confidence == "low"
        assert_error(
            client.post("/v1/detect", json={"text": TEXT, "operating_point": "paranoid"}),
            422,
            "invalid_schema",
        )
