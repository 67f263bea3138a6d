"""A backend that is down fails the whole batch at once: no splitting, one call."""

from __future__ import annotations

from collections.abc import Sequence

from deepfake_stream.consumers.isolate import score_isolating
from deepfake_stream.core.errors import BackendUnavailable
from deepfake_stream.models.base import DetectorSpec, Score


class DownDetector:
    spec = DetectorSpec(model_id="m", kind="fake", version="1")
    ready = True
    version = "1"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        self.calls.append(len(texts))
        raise BackendUnavailable("Modal did not answer within 1s")

    async def load(self) -> None:
        pass

    async def unload(self) -> None:
        pass


def test_backend_unavailable_fails_the_batch_without_splitting() -> None:
    detector = DownDetector()
    outcomes = score_isolating(detector, [f"t{i}" for i in range(64)])
    assert detector.calls == [64]  # one call, not 2·64 - 1
    assert len(outcomes) == 64
    assert all(o.score is None and isinstance(o.error, BackendUnavailable) for o in outcomes)
    assert all(o.batch_size == 64 for o in outcomes)
    assert BackendUnavailable.retriable  # the worker hands every item to its next backend
