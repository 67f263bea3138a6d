"""large-ensemble (retired, models/retired.yaml): the detector contract on the committed
stacker (slow: loads SmolLM2 and MiniLM), plus the stacking arithmetic and member checks on
doubles (fast). Retired models still load for studies, so their kind keeps its tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from deepfake_stream.core.errors import ConfigError
from deepfake_stream.models.base import Detector
from deepfake_stream.models.detectors.ensemble import logit
from deepfake_stream.models.heads import LogisticHead
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.registry import load_registry, load_with_retired, registry_from_dict
from tests.detector_contract import DetectorContract


@pytest.mark.slow
class TestLargeEnsemble(DetectorContract):
    batch_tolerance = 1e-4  # inherits the perplexity member's padding tolerance

    @classmethod
    def make_detector(cls) -> Detector:
        config = load_with_retired().models.get("large-ensemble")
        assert config is not None, "large-ensemble is in models/retired.yaml"
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


def _doc(**ensemble_options: object) -> dict:
    return {
        "models": {
            "tiny-tfidf": {"kind": "tfidf", "size": "tiny", "version": "1", "artifact": "x"},
            "e": {"kind": "ensemble", "size": "large", "version": "1", "options": ensemble_options},
        }
    }


def test_members_are_resolved_in_the_registry_that_holds_the_ensemble(tmp_path: Path) -> None:
    # A registry given by path (--models-config), not the environment: the members' specs
    # come from it, on the ensemble's device.
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(_doc(members=["tiny-tfidf"])))
    (member,) = load_registry(path, default_model="tiny-tfidf").resolve("e").spec("cuda").members
    assert (member.model_id, member.kind, member.artifact) == ("tiny-tfidf", "tfidf", "x")
    assert member.device == "cuda"


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (["nope"], "member 'nope' is not registered"),
        (["e"], "itself an ensemble"),
        ([], "non-empty list"),
        ("tiny-tfidf", "non-empty list"),
    ],
)
def test_bad_members_fail_when_the_registry_loads(members: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        registry_from_dict(_doc(members=members), default_model="tiny-tfidf", source="t")


async def test_an_ensemble_spec_without_members_says_how_to_fix_it() -> None:
    spec = load_with_retired().resolve("large-ensemble").spec()
    detector = build_detector(replace(spec, members=()))
    with pytest.raises(ConfigError, match=r"options\.members"):
        await detector.load()


def test_members_refit_on_their_own_subset_widened_to_the_stacking_rows() -> None:
    from types import SimpleNamespace

    from deepfake_stream.models.training.ensemble import _member_limit

    def member(limit: int | None) -> SimpleNamespace:
        return SimpleNamespace(options={} if limit is None else {"max_train_texts": limit})

    assert _member_limit(member(660), {"max_train_texts": 880}) == 880
    assert _member_limit(member(900), {"max_train_texts": 880}) == 900
    assert _member_limit(member(None), {"max_train_texts": 880}) is None
    assert _member_limit(member(660), {"max_train_texts": None}) is None
