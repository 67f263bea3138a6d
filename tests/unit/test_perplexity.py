"""small-perplexity: the statistics on a tiny random Llama (fast), then the real SmolLM2
(slow: the contract on the committed artifact and the safetensors cache)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from deepfake_stream.models.base import Detector
from deepfake_stream.models.detectors.perplexity import FEATURES, LMStatistics
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.registry import load_registry
from tests.detector_contract import DetectorContract


class CharTokenizer:
    """One token per character (ids 3..), enough of the tokenizer API for LMStatistics."""

    pad_token_id = 2

    def convert_tokens_to_ids(self, token: str) -> int:
        return 0

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict:
        return {"input_ids": [[3 + (ord(c) % 60) for c in t] for t in texts]}


@pytest.fixture(scope="module")
def tiny_lm():  # type: ignore[no-untyped-def]
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


def reference_features(model, ids: list[int]) -> list[float]:  # type: ignore[no-untyped-def]
    """The slow, literal computation: full logits, one text, textbook formulas."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].double()
    target = torch.tensor(ids[1:])
    logp = torch.log_softmax(logits, -1)
    probs = logp.exp()
    ll = logp[torch.arange(len(target)), target]
    # Fast-DetectGPT (Bao et al. 2024), same model as sampler and scorer: the expected
    # log-likelihood and its variance under the model's own conditional distributions.
    mu = (probs * logp).sum(-1)
    var = (probs * logp**2).sum(-1) - mu**2
    fast = (ll.sum() - mu.sum()) / var.sum().sqrt()
    ranks = torch.tensor([int((logp[i] > ll[i]).sum()) + 1 for i in range(len(target))])
    entropy = -mu
    return [
        float(ll.mean()),
        float(ranks.double().log().mean()),
        float(entropy.mean()),
        float(fast),
        float(ll.std(unbiased=False)),
        float(entropy.std(unbiased=False)),
        float((ranks == 1).double().mean()),
        float((ranks <= 10).double().mean()),
    ]


def test_statistics_match_the_literal_reference(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    stats = LMStatistics(tiny_lm, CharTokenizer(), vocab_chunk=5)  # chunks split tokens
    text = "the cat sat on the mat"
    ours = stats.features([text])[0]
    expected = reference_features(tiny_lm, stats.encode([text])[0])
    assert len(ours) == len(FEATURES)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def test_length_sorted_batches_keep_order_and_match_one_at_a_time(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    stats = LMStatistics(tiny_lm, CharTokenizer(), max_batch=3, max_batch_tokens=64)
    texts = ["a much longer text than the others, by far", "hi", "medium length", "x y", "abc"]
    together = stats.features(texts)
    alone = np.stack([stats.features([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-4)
    assert len({round(v, 6) for v in together[:, 0]}) == len(texts)  # really distinct rows


def test_truncation_applies_max_chars_then_max_tokens(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    by_chars = LMStatistics(tiny_lm, CharTokenizer(), max_chars=10, max_tokens=100)
    assert len(by_chars.encode(["z" * 50])[0]) == 1 + 10  # prefix token + 10 characters
    by_tokens = LMStatistics(tiny_lm, CharTokenizer(), max_chars=1000, max_tokens=7)
    assert len(by_tokens.encode(["z" * 50])[0]) == 1 + 7
    assert by_tokens.features(["z" * 50]).tolist() == by_tokens.features(["z" * 7]).tolist()


def test_empty_text_gives_finite_features(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    feats = LMStatistics(tiny_lm, CharTokenizer()).features(["", "ok"])
    assert np.isfinite(feats).all() and feats[0].tolist() == [0.0] * len(FEATURES)


@pytest.mark.slow
def test_safetensors_cache_is_written_then_reused(tmp_path: Path) -> None:
    from deepfake_stream.models.smollm import load_smollm

    first = load_smollm("cpu", cache_dir=tmp_path)
    assert first.source == "gguf"
    assert (first.cache_path / "model.safetensors").is_file()
    assert (first.cache_path / "tokenizer.json").is_file()
    second = load_smollm("cpu", cache_dir=tmp_path)
    assert second.source == "cache" and second.cache_path == first.cache_path
    assert [p.name for p in tmp_path.iterdir()] == [first.cache_path.name]  # no temp left
    ids = first.tokenizer(["Hello world"], add_special_tokens=False)["input_ids"]
    assert second.tokenizer(["Hello world"], add_special_tokens=False)["input_ids"] == ids


@pytest.mark.slow
class TestSmallPerplexity(DetectorContract):
    batch_tolerance = 1e-4  # padding changes float summation order slightly

    @classmethod
    def make_detector(cls) -> Detector:
        config = load_registry().models.get("small-perplexity")
        assert config is not None, "small-perplexity is in the shipped models/registry.yaml"
        return build_detector(config.spec())

    def test_details_carry_the_features(self, loaded: Detector) -> None:
        (score,) = loaded.predict_batch(["The weather today is sunny with a light breeze."])
        assert set(score.details) == set(FEATURES)
        assert all(math.isfinite(v) for v in score.details.values())
