"""Culprit isolation: one bad text in a batch fails alone, its neighbours are scored."""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Sequence

import pytest

from deepfake_stream.consumers.isolate import Outcome, score_isolating
from deepfake_stream.core.errors import ModelError
from deepfake_stream.models.base import DetectorSpec, Score

SPEC = DetectorSpec(model_id="m", kind="fake", version="1")


def score_of(text: str) -> float:
    return (sum(text.encode()) % 97) / 96


class FakeDetector:
    """Fails any batch containing a text that starts with BAD; records every call."""

    spec = SPEC
    ready = True
    numerics = None
    version = "1+sha256:000000000000"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        self.calls.append(len(texts))
        if any(t.startswith("BAD") for t in texts):
            raise RuntimeError("poisoned batch")
        return [Score(score=score_of(t)) for t in texts]

    async def load(self) -> None:
        pass

    async def unload(self) -> None:
        pass


def texts_with(n: int, bad: set[int]) -> list[str]:
    return [f"BAD {i}" if i in bad else f"text {i}" for i in range(n)]


def check_outcomes(texts: list[str], outcomes: list[Outcome], bad: set[int]) -> None:
    assert len(outcomes) == len(texts)
    for i, (text, outcome) in enumerate(zip(texts, outcomes, strict=True)):
        if i in bad:
            assert outcome.score is None
            assert isinstance(outcome.error, RuntimeError)
            assert outcome.batch_size == 1
        else:
            assert outcome.error is None
            assert outcome.score is not None
            assert outcome.score.score == score_of(text)  # in order: the i-th text's score
            assert outcome.batch_size >= 1


def test_empty_batch_makes_no_call() -> None:
    det = FakeDetector()
    assert score_isolating(det, []) == []
    assert det.calls == []


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_clean_batch_is_one_call_with_full_batch_size(n: int) -> None:
    det = FakeDetector()
    texts = texts_with(n, set())
    outcomes = score_isolating(det, texts)
    check_outcomes(texts, outcomes, set())
    assert det.calls == [n]
    assert {o.batch_size for o in outcomes} == {n}


@pytest.mark.parametrize("n", [1, 2, 7, 64])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_single_culprit_is_isolated(n: int, where: str) -> None:
    culprit = {"first": 0, "middle": n // 2, "last": n - 1}[where]
    det = FakeDetector()
    texts = texts_with(n, {culprit})
    outcomes = score_isolating(det, texts)
    check_outcomes(texts, outcomes, {culprit})
    # One failing call per level on the way down, plus the sibling half at each level.
    assert len(det.calls) <= 2 * math.ceil(math.log2(n)) + 1


@pytest.mark.parametrize(
    ("n", "bad"), [(2, {0, 1}), (7, {1, 5}), (64, {0, 17, 40, 63}), (64, {10, 11, 12})]
)
def test_several_culprits_are_isolated(n: int, bad: set[int]) -> None:
    det = FakeDetector()
    texts = texts_with(n, bad)
    outcomes = score_isolating(det, texts)
    check_outcomes(texts, outcomes, bad)
    assert len(det.calls) <= len(bad) * (2 * math.ceil(math.log2(n)) + 1)


def test_batch_size_is_the_size_of_the_call_that_scored_the_item() -> None:
    det = FakeDetector()
    texts = texts_with(8, {0})
    outcomes = score_isolating(det, texts)
    # 8 fails → [0..3] fails, [4..7] scored as 4 → [0,1] fails, [2,3] scored as 2 → 0 fails, 1.
    assert [o.batch_size for o in outcomes] == [1, 1, 2, 2, 4, 4, 4, 4]


class BadOutputDetector(FakeDetector):
    def __init__(self, bad_output: list[float] | None, fail_above: int = 1) -> None:
        super().__init__()
        self.bad_output = bad_output
        self.fail_above = fail_above

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        self.calls.append(len(texts))
        if len(texts) > self.fail_above:
            if self.bad_output is None:  # wrong length
                return [Score(score=0.5)] * (len(texts) - 1)
            return [Score(score=s) for s in self.bad_output[: len(texts)]] + [
                Score(score=0.5)
            ] * max(0, len(texts) - len(self.bad_output))
        return [Score(score=0.25) for _ in texts]


@pytest.mark.parametrize(
    "bad_output",
    [None, [float("nan")], [1.5], [-0.1], [float("inf")]],
    ids=["wrong-length", "nan", "above-one", "negative", "inf"],
)
def test_invalid_detector_output_is_a_failure(bad_output: list[float] | None) -> None:
    det = BadOutputDetector(bad_output, fail_above=0)  # every call returns bad output
    outcomes = score_isolating(det, ["a", "b", "c"])
    assert all(o.score is None for o in outcomes)
    assert all(isinstance(o.error, ModelError) for o in outcomes)


def test_invalid_output_on_big_batches_is_split_until_valid() -> None:
    det = BadOutputDetector([float("nan")], fail_above=2)
    outcomes = score_isolating(det, [f"t{i}" for i in range(8)])
    assert all(o.score is not None and o.score.score == 0.25 for o in outcomes)
    assert {o.batch_size for o in outcomes} == {2}


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError: isolate matches the class name."""


class MemoryBoundDetector(FakeDetector):
    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        self.calls.append(len(texts))
        if len(texts) > 4:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [Score(score=score_of(t)) for t in texts]


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A stand-in torch whose empty_cache records calls (and keeps the test fast)."""
    emptied: list[str] = []
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(empty_cache=lambda: emptied.append("x"))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    return emptied


@pytest.mark.parametrize("n", [5, 7, 64])
def test_out_of_memory_halves_until_everything_is_scored(n: int, fake_torch: list[str]) -> None:
    det = MemoryBoundDetector()
    texts = [f"text {i}" for i in range(n)]
    outcomes = score_isolating(det, texts)
    assert len(outcomes) == n
    for text, outcome in zip(texts, outcomes, strict=True):
        assert outcome.error is None and outcome.score is not None
        assert outcome.score.score == score_of(text)
        assert 1 <= outcome.batch_size <= 4
    assert fake_torch, "the accelerator cache is freed after an out-of-memory error"
    assert len(fake_torch) == sum(1 for c in det.calls if c > 4)


def test_other_errors_do_not_touch_the_accelerator(fake_torch: list[str]) -> None:
    det = FakeDetector()
    score_isolating(det, texts_with(4, {2}))
    assert fake_torch == []


def test_single_item_out_of_memory_is_reported(fake_torch: list[str]) -> None:
    class AlwaysOom(FakeDetector):
        def predict_batch(self, texts: Sequence[str]) -> list[Score]:
            raise OutOfMemoryError("still too big")

    [outcome] = score_isolating(AlwaysOom(), ["huge"])
    assert outcome.score is None and type(outcome.error).__name__ == "OutOfMemoryError"
    assert outcome.batch_size == 1
