"""medium-embedding: the detector contract on the committed artifact (MiniLM loads in a few
seconds), plus truncation, length-sorted batching and layer pooling. Retired from serving
(models/retired.yaml), it is still the transformer workload `bench` measures."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_stream.models.base import Detector
from deepfake_stream.models.detectors.embedding import MiniLMFeatures, layer_features
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.registry import load_with_retired
from tests.detector_contract import DetectorContract


class TestMediumEmbedding(DetectorContract):
    batch_tolerance = 1e-5  # padding changes float summation order slightly

    @classmethod
    def make_detector(cls) -> Detector:
        return build_detector(load_with_retired().resolve("medium-embedding").spec())

    def test_uses_the_layers_chosen_at_training(self, loaded: Detector) -> None:
        from deepfake_stream.models.artifacts import load_verified

        head = load_verified("medium-embedding").read_json("head.json")
        assert loaded._layers == head["extra"]["layers"]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def minilm() -> MiniLMFeatures:
    return MiniLMFeatures("cpu", max_chars=200, max_tokens=16, max_batch=2, max_batch_tokens=40)


def test_truncation_applies_max_chars_then_max_tokens(minilm: MiniLMFeatures) -> None:
    assert len(minilm.encode(["word " * 100])[0]) == 16  # [CLS] + 14 tokens + [SEP]
    minilm.max_tokens = 512
    try:
        # 200 characters of "word " are 40 words: the character limit binds first.
        assert len(minilm.encode(["word " * 100])[0]) == 2 + 40
    finally:
        minilm.max_tokens = 16


def test_sorted_sub_batches_keep_order_and_match_one_at_a_time(minilm: MiniLMFeatures) -> None:
    texts = ["a rather long sentence about the weather and the sea", "hi", "two words", "x"]
    together = minilm.pooled(texts)
    alone = np.concatenate([minilm.pooled([t]) for t in texts])
    assert together.shape == (4, 7, 384)
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_layer_features_concatenate_in_the_given_order() -> None:
    pooled = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    assert layer_features(pooled, [2, 0]).tolist() == [[4, 5, 0, 1], [10, 11, 6, 7]]
