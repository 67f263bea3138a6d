"""The behaviour every detector owes the pipeline, written once.

Subclass :class:`DetectorContract` as ``Test<Detector>`` and implement ``make_detector``;
pytest collects the inherited tests for each subclass (as FastStream does per broker).
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Sequence

import pytest

from deepfake_stream.core.errors import DetectError
from deepfake_stream.models.base import Detector, Score

VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.\-]*\+sha256:[0-9a-f]{12}$")

TEXTS: Sequence[str] = (
    "The mitochondria is the powerhouse of the cell, as every biology textbook says.",
    "honestly no idea why the bus was late again, third time this week",
    "In conclusion, it is important to note that renewable energy offers many benefits.",
    "Die Katze schläft auf dem Sofa, während draußen der Regen fällt.",
)
ODD_TEXTS: Sequence[str] = (
    "😀🚀 émojis et accents — naïve café",
    "日本語のテキストと中文文本 and العربية النص",
    "z\u0301a\u0308\u200b\u200d\ufeff combining marks and zero-width joiners",
    "\x00\x1f control characters \t\n\r\x0b\x0c and tabs",
    "a",
    "!!!???...",
    "    ",
    "word " * 20_000,  # 100,000 characters: the contract's MAX_TEXT_CHARS
)


class DetectorContract:
    """Inherited tests; subclasses implement the ``make_detector`` classmethod, which returns
    a fresh, unloaded detector."""

    batch_tolerance: float = 1e-6
    """How far a text's score may move with its batch neighbours (padding, for instance)."""

    @classmethod
    def make_detector(cls) -> Detector:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    async def loaded(cls) -> AsyncIterator[Detector]:
        """Loaded once per class: large detectors are slow to load."""
        detector = cls.make_detector()
        await detector.load()
        yield detector
        await detector.unload()

    def test_satisfies_protocol(self) -> None:
        detector = self.make_detector()
        assert isinstance(detector, Detector)
        assert detector.ready is False

    async def test_lifecycle(self) -> None:
        detector = self.make_detector()
        await detector.load()
        assert detector.ready is True
        assert VERSION.match(detector.version), detector.version
        assert detector.version.startswith(detector.spec.version + "+sha256:")
        await detector.unload()
        assert detector.ready is False
        with pytest.raises(DetectError):
            detector.predict_batch(["not loaded any more"])

    def test_one_score_per_text_in_range(self, loaded: Detector) -> None:
        scores = loaded.predict_batch(TEXTS)
        assert len(scores) == len(TEXTS)
        for s in scores:
            assert isinstance(s, Score)
            assert 0.0 <= s.score <= 1.0 and math.isfinite(s.score)

    def test_order_is_kept(self, loaded: Detector) -> None:
        together = [s.score for s in loaded.predict_batch(TEXTS)]
        alone = [loaded.predict_batch([t])[0].score for t in TEXTS]
        assert together == pytest.approx(alone, abs=self.batch_tolerance)
        reversed_ = [s.score for s in loaded.predict_batch(list(reversed(TEXTS)))]
        assert reversed_[::-1] == pytest.approx(together, abs=self.batch_tolerance)

    def test_deterministic(self, loaded: Detector) -> None:
        first = [s.score for s in loaded.predict_batch(TEXTS)]
        assert [s.score for s in loaded.predict_batch(TEXTS)] == first

    def test_empty_batch(self, loaded: Detector) -> None:
        assert loaded.predict_batch([]) == []

    def test_unicode_and_long_text(self, loaded: Detector) -> None:
        scores = loaded.predict_batch(ODD_TEXTS)
        assert len(scores) == len(ODD_TEXTS)
        assert all(0.0 <= s.score <= 1.0 and math.isfinite(s.score) for s in scores)
