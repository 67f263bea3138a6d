"""large-ensemble: the detector contract on the committed stacker (slow: loads SmolLM2 and
MiniLM), plus the stacking arithmetic and member checks on doubles (fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from deepfake_stream.errors import ConfigError
from models.base import Detector
from models.ensemble import logit, member_specs
from models.heads import LogisticHead
from models.kinds import build_detector
from routing.registry import load_registry
from tests.detector_contract import DetectorContract


@pytest.mark.slow
class TestLargeEnsemble(DetectorContract):
    batch_tolerance = 1e-4  # inherits the perplexity member's padding tolerance

    @classmethod
    def make_detector(cls) -> Detector:
        config = load_registry().models.get("large-ensemble")
        if config is None:  # registered together with its trained artifact
            pytest.skip("large-ensemble is not registered")
        return build_detector(config.spec())

    def test_details_carry_member_scores(self, loaded: Detector) -> None:
        (score,) = loaded.predict_batch(["A short note about trains and timetables."])
        assert set(score.details) == {"tiny-tfidf", "small-perplexity", "medium-embedding"}


def test_logit_is_the_inverse_of_the_head_sigmoid_and_clipped() -> None:
    p = np.array([0.1, 0.5, 0.9, 0.0, 1.0])
    z = logit(p)
    assert np.isfinite(z).all()
    np.testing.assert_allclose(1 / (1 + np.exp(-z[:3])), p[:3])


def test_stacker_head_round_trips_through_json() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x @ [1.0, 2.0, -1.0] > 0).astype(int)
    head = LogisticHead.fit(x, y, features=["a", "b", "c"], c=1.0, extra={"members": ["a"]})
    again = LogisticHead.from_json(head.to_json())
    np.testing.assert_allclose(again.predict_proba(x), head.predict_proba(x))
    assert again.extra == {"members": ["a"]}


def test_members_come_from_the_registry_in_models_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = {
        "models": {
            "tiny-tfidf": {"kind": "tfidf", "size": "tiny", "version": "1", "artifact": "x"},
            "e": {"kind": "ensemble", "size": "large", "version": "1", "options": {}},
        }
    }
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("MODELS_CONFIG", str(path))
    (spec,) = member_specs({"members": ["tiny-tfidf"]}, "cpu")
    assert spec.model_id == "tiny-tfidf" and spec.kind == "tfidf" and spec.device == "cpu"
    with pytest.raises(ConfigError, match="itself an ensemble"):
        member_specs({"members": ["e"]}, "cpu")


def test_members_refit_on_their_own_subset_widened_to_the_stacking_rows() -> None:
    from types import SimpleNamespace

    from models.ensemble_train import _member_limit

    def member(limit: int | None) -> SimpleNamespace:
        return SimpleNamespace(options={} if limit is None else {"max_train_texts": limit})

    assert _member_limit(member(660), {"max_train_texts": 880}) == 880
    assert _member_limit(member(900), {"max_train_texts": 880}) == 900
    assert _member_limit(member(None), {"max_train_texts": 880}) is None
    assert _member_limit(member(660), {"max_train_texts": None}) is None
