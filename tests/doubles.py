"""Test doubles for detectors (never imported from conftest.py): an echo, a failing, a
poison-sensitive and a slow one. All implement the Detector contract."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

from deepfake_stream.core.errors import ModelError
from deepfake_stream.models.base import DetectorSpec, Score
from deepfake_stream.models.kinds import register_kind


class EchoDetector:
    """Deterministic score from the text's hash; records every batch it saw."""

    numerics: str | None = None

    def __init__(self, spec: DetectorSpec) -> None:
        self.spec = spec
        self.ready = False
        self.batches: list[int] = []

    @property
    def version(self) -> str:
        return f"{self.spec.version}+sha256:{'0' * 12}"

    async def load(self) -> None:
        self.ready = True

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        self.batches.append(len(texts))
        return [Score(score=hashlib.sha256(t.encode()).digest()[0] / 255) for t in texts]

    async def unload(self) -> None:
        self.ready = False


class FailingDetector(EchoDetector):
    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        self.batches.append(len(texts))
        raise ModelError("this detector always fails")


class PoisonDetector(EchoDetector):
    """Fails a whole batch when any text in it contains POISON."""

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        if any("POISON" in t for t in texts):
            self.batches.append(-len(texts))
            raise RuntimeError("poisoned input")
        return super().predict_batch(texts)


class SlowDetector(EchoDetector):
    delay_s = 0.05

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        time.sleep(self.delay_s)
        return super().predict_batch(texts)


def register_doubles() -> None:
    register_kind("echo", EchoDetector)
    register_kind("failing", FailingDetector)
    register_kind("poison", PoisonDetector)
    register_kind("slow", SlowDetector)
