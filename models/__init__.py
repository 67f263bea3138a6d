"""Detectors: one module per kind (:mod:`deepfake_stream.models.detectors`), one contract
(:class:`deepfake_stream.models.base.Detector`), one base class that holds its lifecycle
(:class:`deepfake_stream.models.base.BaseDetector`) and one declaration per kind
(:class:`deepfake_stream.models.kinds.DetectorKind`). Training lives apart, in
:mod:`deepfake_stream.models.training`."""

from deepfake_stream.models.base import BaseDetector, Detector, DetectorSpec, Score
from deepfake_stream.models.kinds import DetectorKind, build_detector, known_kinds, register_kind

__all__ = [
    "BaseDetector",
    "Detector",
    "DetectorKind",
    "DetectorSpec",
    "Score",
    "build_detector",
    "known_kinds",
    "register_kind",
]
