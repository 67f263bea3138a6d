"""tools/fusion_study.py: each set is scored with nothing fitted on it (synthetic features)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture(scope="module")
def study() -> ModuleType:
    sys.path.insert(0, str(TOOLS))  # as when run as a script: it imports the routes study
    try:
        return importlib.import_module("fusion_study")
    finally:
        sys.path.remove(str(TOOLS))


def synthetic(name: str, shift: float, seed: int, n: int = 200) -> dict:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    return {
        "name": name,
        "y": y,
        "group": ["a" if i % 2 else "b" for i in range(n)],
        "tfidf": rng.normal(y * 1.0, 1.0) + shift,
        "cache_gain": rng.normal(y * 0.5, 2.0) + shift,
    }


def test_zsum_standardises_on_the_other_sets_human_texts_only(study: ModuleType) -> None:
    sets = [synthetic("one", 0, 1), synthetic("two", 0, 2), synthetic("far", 100, 3)]
    fit, target = sets[:2], sets[2]
    s_fit, s_t = study.fused_scores(fit, target, ("tfidf", "cache_gain"), "zsum")
    human = np.concatenate([s["tfidf"][s["y"] == 0] for s in fit])
    expected = (target["tfidf"] - human.mean()) / human.std()
    human = np.concatenate([s["cache_gain"][s["y"] == 0] for s in fit])
    expected += (target["cache_gain"] - human.mean()) / human.std()
    assert s_t == pytest.approx(expected) and len(s_fit) == 400

    result = study.cross_set(sets, ("tfidf",), "zsum")
    # "far" sits 100 above the others: a threshold from them flags every text of it, while
    # its ranking (AUROC) is its own; the near sets are flagged at about the target rate
    assert result["far"]["fpr"] == result["far"]["tpr"] == 1.0
    assert result["far"]["auroc"] == pytest.approx(study.auroc(target["y"], target["tfidf"]))
    assert set(result["far"]["by_group"]) == {"a", "b"}
    assert result["far"]["by_group"]["a"]["fpr"] == 1.0
    assert result["one"]["fpr"] < 0.05


def test_lr_takes_its_fitting_sets_direction_and_zsum_does_not(study: ModuleType) -> None:
    sets = [synthetic("one", 0, 1), synthetic("two", 0, 2)]
    sets[1]["tfidf"] = -sets[1]["tfidf"]  # the statistic points the other way on "two"
    lr = study.cross_set(sets, ("tfidf",), "lr")
    # fitted on "two", the head learns its direction and gets "one" wrong (and the reverse)
    assert lr["one"]["auroc"] < 0.5 and lr["two"]["auroc"] < 0.5
    zsum = study.cross_set(sets, ("tfidf",), "zsum")
    # a fixed orientation (higher = AI) keeps "one" right; "two" is wrong either way
    assert zsum["one"]["auroc"] > 0.5 > zsum["two"]["auroc"]
