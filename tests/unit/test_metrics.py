"""binary_metrics: the contract keys, agreement with sklearn, and the TPR@1%FPR rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from deepfake_stream.models.metrics import KEYS, binary_metrics, tpr_at_fpr


def test_keys_and_json() -> None:
    m = binary_metrics([0, 1, 1, 0], [0.1, 0.9, 0.4, 0.6])
    assert set(m) == set(KEYS) - {"texts_per_s"}
    json.dumps(m, allow_nan=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(np.clip(y * 0.3 + rng.normal(0.4, 0.25, 300), 0, 1), 2)  # rounded: ties
    m = binary_metrics(y, s, threshold=0.5)
    assert m["n"] == 300
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, s >= 0.5))
    assert m["f1"] == pytest.approx(f1_score(y, s >= 0.5))


def test_perfect_and_inverted() -> None:
    assert binary_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])["auroc"] == 1.0
    m = binary_metrics([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])
    assert m["auroc"] == 0.0
    assert m["tpr_at_1pct_fpr"] == 0.0
    assert m["accuracy"] == 0.0


def test_tpr_at_fpr_is_an_operating_point() -> None:
    # 200 humans: a 1% budget allows two false positives.
    y = np.array([0] * 200 + [1] * 10)
    s = np.array([0.0] * 197 + [0.7, 0.95, 0.99] + [1.0] * 4 + [0.96] * 3 + [0.5] * 3)
    # t=0.96: fp=1 (0.99), tp=7 -> allowed; t=0.95: fp=2 -> allowed but no new tp;
    # t=0.7: fp=3 -> over budget. Best within budget: 7/10.
    assert tpr_at_fpr(y, s, 0.01) == pytest.approx(0.7)
    # Ties straddling the budget are not split: at 0.96 all tied items count together.
    y2 = np.array([0] * 100 + [1] * 2)
    s2 = np.array([0.1] * 98 + [0.9, 0.9] + [0.9, 0.9])
    assert tpr_at_fpr(y2, s2, 0.01) == 0.0


def test_single_class_is_none() -> None:
    m = binary_metrics([1, 1], [0.2, 0.9])
    assert m["auroc"] is None and m["tpr_at_1pct_fpr"] is None
    assert m["accuracy"] == 0.5


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        binary_metrics([], [])
    with pytest.raises(ValueError):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError):
        binary_metrics([0, 1], [0.1])
