"""The curvature kind's cross-set study on synthetic features: which side a head and its
threshold are fitted on, and the grouping of its figures (``--by``)."""

from __future__ import annotations

import numpy as np

from deepfake_stream.models.dataset import Example
from deepfake_stream.models.detectors.curvature import FEATURES
from deepfake_stream.models.training.curvature import study


def synthetic(name: str, n_pairs: int, shift: float, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    """Pairs whose AI text has a higher ``cache_gain`` by ``shift``; two languages."""
    examples, rows = [], []
    for i in range(n_pairs):
        for label in (0, 1):
            lang = "en" if i % 2 else "de"
            examples.append(
                Example(
                    text=f"{name} {i} {label}",
                    label=label,
                    id=f"{name}{i}-{'ai' if label else 'human'}",
                    fields={"domain": name, "language": lang},
                )
            )
            row = rng.normal(size=len(FEATURES))
            row[FEATURES.index("cache_gain")] += shift * label
            rows.append(row)
    return examples, np.array(rows)


def test_each_dev_set_is_scored_by_a_head_fitted_on_the_others_grouped_by_field() -> None:
    rng = np.random.default_rng(0)
    sets, feats = {}, {}
    for name, shift in (("corpus", 3.0), ("devA", 3.0), ("devB", 3.0)):
        sets[name], feats[name] = synthetic(name, 60, shift, rng)
    report = study(
        sets, feats, c_grid=[1.0], target_fpr=0.05, seed=1, feature_set="cache_gain", by="language"
    )
    assert set(report["cross_set"]) == {"devA", "devB"}
    for held, res in report["cross_set"].items():
        assert held not in res["fitted_on"] and "corpus" in res["fitted_on"]
        assert list(res["coef"]) == ["cache_gain"] and res["coef"]["cache_gain"] > 0
        assert set(res["held_out"]) == {"all", "de", "en"}
        assert res["held_out"]["all"]["auroc"] > 0.9
        # The threshold came from the fitting side's human texts, at about 5% FPR.
        assert res["held_out"]["all"]["fpr"] < 0.2
    zero_shot = report["zero_shot"]["devA"]["cache_gain"]
    assert set(zero_shot) == {"all", "de", "en"} and zero_shot["all"] > 0.9
