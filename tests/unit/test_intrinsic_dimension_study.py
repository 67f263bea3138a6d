"""tools/intrinsic_dimension_study.py: the PHD estimator recovers known dimensions."""

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
    sys.path.insert(0, str(TOOLS))
    try:
        return importlib.import_module("intrinsic_dimension_study")
    finally:
        sys.path.remove(str(TOOLS))


def test_the_spanning_tree_of_points_on_a_line_is_the_line(study: ModuleType) -> None:
    points = np.array([[0.0, 0.0], [3.0, 0.0], [1.0, 0.0], [7.0, 0.0]])
    assert study.mst_length(study.distances(points)) == pytest.approx(7.0)
    square = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    assert study.mst_length(study.distances(square)) == pytest.approx(3.0)


@pytest.mark.parametrize("dim", [2, 5])
def test_points_in_a_subspace_of_an_embedding_read_as_its_dimension(
    study: ModuleType, dim: int
) -> None:
    rng = np.random.default_rng(dim)
    points = np.zeros((400, 384))  # MiniLM's width; only `dim` coordinates vary
    points[:, :dim] = rng.random((400, dim))
    slope = study.phd_slope(points, rng)
    assert 1 / (1 - slope) == pytest.approx(dim, rel=0.15)


def test_a_text_too_short_for_the_estimate_gets_none(study: ModuleType) -> None:
    short = np.random.default_rng(0).random((study.MIN_TOKENS - 1, 8))
    assert np.isnan(study.phd_slope(short, np.random.default_rng(0)))
