"""A detector kind is one module plus a registry entry: this module is one.

It declares a toy kind (its detector, on :class:`BaseDetector`, and its trainer) and nothing
else is registered anywhere: the registry entry names this module as its ``kind``, ``train``
writes its artifact, and :func:`build_detector` builds and loads it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from deepfake_stream.core.errors import ConfigError, ModelError, ModelUnavailable
from deepfake_stream.models.artifacts import load_verified
from deepfake_stream.models.base import BaseDetector, Detector, DetectorSpec, Score
from deepfake_stream.models.dataset import Example
from deepfake_stream.models.kinds import (
    DetectorKind,
    build_detector,
    get_kind,
    known_kinds,
    register_kind,
)
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.models.training import TrainedModel, train

DATA = Path(__file__).parents[1] / "data" / "labelled_small.jsonl"
MODEL_FILE = "model.json"


def word_length(text: str) -> float:
    words = text.split()
    return sum(map(len, words)) / len(words) if words else 0.0


def _probability(model: dict[str, float], text: str) -> float:
    return 1.0 / (1.0 + math.exp(-model["slope"] * (word_length(text) - model["midpoint"])))


class WordLengthDetector(BaseDetector):
    """P(AI) from the mean word length: only what is this kind's own."""

    def __init__(self, spec: DetectorSpec) -> None:
        super().__init__(spec)
        self._model: dict[str, float] | None = None

    def read_model(self) -> str:
        manifest = load_verified(self.spec.artifact or "")
        self._model = manifest.read_json(MODEL_FILE)
        return manifest.versioned(self.spec.version)

    def predict(self, texts: Sequence[str]) -> list[Score]:
        model = self.loaded(self._model)
        return [Score(score=_probability(model, t)) for t in texts]

    def release_model(self) -> None:
        self._model = None


def train_word_length(
    examples: Sequence[Example], *, options: dict[str, Any], seed: int, progress: bool
) -> TrainedModel:
    """The midpoint between the classes' mean word lengths."""
    human = np.mean([word_length(e.text) for e in examples if e.label == 0])
    ai = np.mean([word_length(e.text) for e in examples if e.label == 1])
    slope = float(options.get("slope", 4.0)) * (1.0 if ai >= human else -1.0)
    model = {"midpoint": float((human + ai) / 2), "slope": slope}
    return TrainedModel(
        files={MODEL_FILE: model},
        scorer=lambda texts: np.array([_probability(model, t) for t in texts]),
        extra={"kind": __name__, "training": model},
    )


KIND = DetectorKind(
    name=__name__,
    detector=WordLengthDetector,
    trainer=f"{__name__}:train_word_length",
)

REGISTRY_YAML = f"""
models:
  word-length:
    kind: {__name__}
    size: tiny
    version: "0.1.0"
    artifact: ARTIFACT
    options: {{slope: 4.0}}
"""


def _registry(artifact: Path) -> Any:
    doc = yaml.safe_load(REGISTRY_YAML.replace("ARTIFACT", str(artifact)))
    return registry_from_dict(doc, default_model="word-length", source="test")


async def test_one_module_and_a_registry_entry_make_a_kind(tmp_path: Path) -> None:
    registry = _registry(tmp_path / "word-length")
    result = train("word-length", DATA, registry=registry, progress=False)
    assert Path(result["artifact"]) == tmp_path / "word-length"

    detector = build_detector(registry.resolve("word-length").spec())
    assert isinstance(detector, WordLengthDetector) and isinstance(detector, Detector)
    assert detector.ready is False and detector.version == "0.1.0"
    await detector.load()
    assert detector.ready and detector.version == result["model_version"]
    assert detector.metadata() == {
        "model_id": "word-length",
        "kind": __name__,
        "version": result["model_version"],
        "device": "cpu",
        "ready": True,
    }
    scores = detector.predict_batch(["short words", "considerably elongated vocabulary"])
    assert len(scores) == 2 and all(0.0 <= s.score <= 1.0 for s in scores)
    assert detector.predict_batch([]) == []
    await detector.unload()
    with pytest.raises(ModelUnavailable):
        detector.predict_batch(["not loaded any more"])


def test_the_builtin_kinds_are_the_modules_of_models_detectors() -> None:
    builtin = ("tfidf", "perplexity", "embedding", "ensemble", "curvature", "fusion")
    assert set(builtin) <= set(known_kinds())
    for name in builtin:
        kind = get_kind(name)
        assert kind.name == name and kind.trainer is not None
    tfidf = get_kind("tfidf")
    assert tfidf.portable is not None and tfidf.portable.file == "model.json"
    assert get_kind("perplexity").portable is None


def test_a_kind_no_module_declares_is_a_config_error() -> None:
    spec = DetectorSpec(model_id="m", kind="no-such-kind", version="1")
    with pytest.raises(ConfigError, match="unknown detector kind 'no-such-kind'"):
        build_detector(spec)
    # A module without (or with another) KIND is not a kind either.
    with pytest.raises(ConfigError, match="declares no detector kind"):
        build_detector(DetectorSpec(model_id="m", kind="tests.doubles", version="1"))


def test_a_kind_without_a_trainer_is_not_trainable(tmp_path: Path) -> None:
    register_kind("untrainable", WordLengthDetector)
    registry = registry_from_dict(
        {"models": {"u": {"kind": "untrainable", "size": "tiny", "version": "1"}}},
        default_model="u",
        source="test",
    )
    with pytest.raises(ConfigError, match="not trainable"):
        train("u", DATA, registry=registry, out_dir=tmp_path, progress=False)


async def test_the_base_refuses_a_non_finite_score() -> None:
    class NaNDetector(BaseDetector):
        def read_model(self) -> str:
            return "1+sha256:" + "0" * 12

        def predict(self, texts: Sequence[str]) -> list[Score]:
            return [Score(score=float("nan")) for _ in texts]

    detector = NaNDetector(DetectorSpec(model_id="nan", kind="nan", version="1"))
    await detector.load()
    with pytest.raises(ModelError, match="non-finite score"):
        detector.predict_batch(["x"])
