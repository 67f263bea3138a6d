"""Detector kinds: the registry's ``kind`` field to the class that implements it.

Imports are lazy so a CPU worker that never loads SmolLM2 never imports transformers.
Tests add their doubles with :func:`register_kind`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from deepfake_stream.core.errors import ConfigError
from deepfake_stream.models.base import Detector, DetectorSpec

_KINDS: dict[str, str | Callable[[DetectorSpec], Detector]] = {
    "tfidf": "deepfake_stream.models.tfidf:TfidfDetector",
    "perplexity": "deepfake_stream.models.perplexity:PerplexityDetector",
    "embedding": "deepfake_stream.models.embedding:EmbeddingDetector",
    "ensemble": "deepfake_stream.models.ensemble:EnsembleDetector",
    "curvature": "deepfake_stream.models.curvature:CurvatureDetector",
}


def register_kind(name: str, factory: str | Callable[[DetectorSpec], Detector]) -> None:
    _KINDS[name] = factory


def known_kinds() -> list[str]:
    return sorted(_KINDS)


def build_detector(spec: DetectorSpec) -> Detector:
    try:
        factory = _KINDS[spec.kind]
    except KeyError:
        raise ConfigError(
            f"model {spec.model_id!r} has unknown kind {spec.kind!r}; known: {known_kinds()}"
        ) from None
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(spec)
