"""Detectors: one module each, one contract (:class:`models.base.Detector`)."""

from models.base import Detector, DetectorSpec, Score
from models.kinds import build_detector, known_kinds, register_kind

__all__ = ["Detector", "DetectorSpec", "Score", "build_detector", "known_kinds", "register_kind"]
