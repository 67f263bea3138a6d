"""Detectors: one module each, one contract (:class:`deepfake_stream.models.base.Detector`)."""

from deepfake_stream.models.base import Detector, DetectorSpec, Score
from deepfake_stream.models.kinds import build_detector, known_kinds, register_kind

__all__ = ["Detector", "DetectorSpec", "Score", "build_detector", "known_kinds", "register_kind"]
