"""small-curvature: the window statistics on a tiny random Llama and on hand-made per-token
rows (fast), then the real int8 SmolLM2 through the registry (one load, a few texts)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepfake_stream.models.detectors.curvature import (
    FEATURES,
    WindowStatistics,
    cache_gains,
    quantize_int8,
    quantized_digest,
    text_features,
)
from tests.unit.test_perplexity import CharTokenizer
from tests.unit.test_perplexity import tiny_lm as tiny_lm  # the fixture, re-exported


def literal_per_token(model, ids: list[int]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Full logits of one text, textbook formulas: ll, E[log p], Var[log p], top-1 hit, then
    the token's log-probability after the first (separator) token alone, and its id."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].double()
        alone = model(torch.tensor([ids[:1]])).logits[0, -1].double()
    target = torch.tensor(ids[1:])
    logp = torch.log_softmax(logits, -1)
    probs = logp.exp()
    ll = logp[torch.arange(len(target)), target]
    mu = (probs * logp).sum(-1)
    var = (probs * logp**2).sum(-1) - mu**2
    top1 = (logp.argmax(-1) == target).double()
    prior = torch.log_softmax(alone, -1)[target]
    return torch.stack([ll, mu, var, top1, prior, target.double()], -1).numpy()


def rows_of(stats: list[list[float]]) -> np.ndarray:
    """Hand-made rows of (ll, E, Var, top-1): a context-free prior of 0.01 each, ids 0, 1, ..."""
    return np.array([[*r, math.log(0.01), i] for i, r in enumerate(stats)])


def test_per_token_statistics_match_the_literal_reference(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    stats = WindowStatistics(tiny_lm, CharTokenizer(), vocab_chunk=5, window=8)
    text = "the cat sat on the mat and then it slept"
    ids = stats.encode([text])[0]
    import torch

    with torch.inference_mode():
        (ours,) = stats._score([ids])
    np.testing.assert_allclose(ours, literal_per_token(tiny_lm, ids), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        stats.features([text])[0],
        text_features(literal_per_token(tiny_lm, ids), 8),
        rtol=1e-5,
        atol=1e-5,
    )


def test_curvature_and_ratio_formulas_on_hand_made_tokens() -> None:
    # 4 tokens: log p(x) = -1 each, E[log p] = -2 each, Var = 1 each.
    rows = rows_of([[-1.0, -2.0, 1.0, 1.0]] * 4)
    f = dict(zip(FEATURES, text_features(rows, window=2), strict=True))
    # Fast-DetectGPT: (sum ll - sum E) / sqrt(sum Var) = (-4 + 8) / 2 = 2; per token / sqrt(4).
    assert f["curvature_per_token"] == pytest.approx(1.0)
    # Binoculars-like: log-perplexity 1 over mean entropy 2.
    assert f["ratio"] == pytest.approx(0.5)
    # Two windows of 2 tokens, each (-2 + 4) / sqrt(2) / sqrt(2) = 1.
    assert f["win_curvature_mean"] == pytest.approx(1.0) and f["win_curvature_std"] == 0.0
    assert f["top1_fraction"] == 1.0 and f["log_tokens"] == pytest.approx(math.log(4))


def test_windows_see_a_change_inside_the_text() -> None:
    predictable = [[-0.5, -2.0, 1.0, 1.0]] * 8  # more likely than the model expected: AI-like
    surprising = [[-4.0, -2.0, 1.0, 0.0]] * 8
    f = dict(zip(FEATURES, text_features(rows_of(predictable + surprising), window=8), strict=True))
    assert f["win_curvature_max"] > 0 > f["win_curvature_min"]
    assert f["win_ratio_min"] == pytest.approx(0.25) and f["win_ratio_max"] == pytest.approx(2.0)


def test_a_short_remainder_joins_the_last_window() -> None:
    rows = rows_of([[-1.0, -2.0, 1.0, 1.0]] * 10)
    # 10 tokens, window 8: the 2-token remainder (< half a window) joins: one window only.
    assert text_features(rows, window=8)[FEATURES.index("win_curvature_std")] == 0.0


def test_cache_gain_discounts_a_text_repeating_its_own_words() -> None:
    # The same log p for every token; in one text the tokens repeat, in the other they don't.
    fresh = rows_of([[-2.0, -3.0, 1.0, 0.0]] * 8)
    repeating = fresh.copy()
    repeating[:, 5] = [7, 7, 7, 7, 7, 7, 7, 7]
    f_fresh = dict(zip(FEATURES, text_features(fresh, window=4), strict=True))
    f_rep = dict(zip(FEATURES, text_features(repeating, window=4), strict=True))
    # gain: log p minus the context-free prior, blind to repetition.
    assert f_fresh["gain"] == f_rep["gain"] == pytest.approx(-2.0 - math.log(0.01))
    # The in-text prior of token t: (count before t + 10 * 0.01) / (t + 10).
    expected = [-2.0 - math.log((0 + 0.1) / (t + 10)) for t in range(8)]
    np.testing.assert_allclose(cache_gains(fresh[:, 0], fresh[:, 4], fresh[:, 5]), expected)
    assert f_fresh["cache_gain"] == pytest.approx(np.mean(expected))
    # Repeated tokens were expected by the in-text prior: less gain, window by window.
    assert f_rep["cache_gain"] < f_fresh["cache_gain"]
    assert f_rep["win_cache_gain_mean"] < f_fresh["win_cache_gain_mean"]
    assert f_rep["win_cache_gain_max"] < f_fresh["win_cache_gain_max"]


def test_cache_gain_counts_each_token_among_those_before_it() -> None:
    # Mixed repeats, in any order: the prior's count is the number of earlier equal tokens.
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 6, size=200)
    ll, prior_ll = rng.normal(-3, 1, size=200), rng.normal(-5, 1, size=200)
    before = [int((ids[:t] == ids[t]).sum()) for t in range(200)]
    expected = ll - np.log((np.array(before) + 10 * np.exp(prior_ll)) / (np.arange(200) + 10))
    np.testing.assert_array_equal(cache_gains(ll, prior_ll, ids), expected)
    assert cache_gains(np.array([]), np.array([]), np.array([])).shape == (0,)


def test_empty_text_gives_zeros(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    feats = WindowStatistics(tiny_lm, CharTokenizer()).features(["", "ok then"])
    assert np.isfinite(feats).all() and feats[0].tolist() == [0.0] * len(FEATURES)


def test_int8_quantisation_is_deterministic_and_close(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    import copy

    a, b = quantize_int8(copy.deepcopy(tiny_lm)), quantize_int8(copy.deepcopy(tiny_lm))
    assert quantized_digest(a) == quantized_digest(b)
    text = "some words to score with both models"
    fp32 = WindowStatistics(tiny_lm, CharTokenizer()).features([text])
    int8 = WindowStatistics(a, CharTokenizer()).features([text])
    assert np.isfinite(int8).all()
    np.testing.assert_allclose(int8, fp32, atol=0.2)


@pytest.mark.slow
async def test_small_curvature_scores_through_the_registry() -> None:
    from deepfake_stream.models.kinds import build_detector
    from deepfake_stream.models.registry import registry_from_dict

    # Not in the shipped registry (README: studied, not registered): the README's entry.
    entry = {
        "kind": "curvature",
        "size": "small",
        "version": "2026.12.1",
        "artifact": "small-curvature",
        "max_batch_size": 16,
        "options": {"max_chars": 4000, "max_tokens": 128, "window": 32, "quantize": "int8",
                    "max_batch": 1},
        "backends": ["cpu"],
        "window_chars": 400,
        "max_windows": 16,
    }  # fmt: skip
    doc = {"models": {"small-curvature": entry}}
    config = registry_from_dict(doc, default_model="small-curvature", source="test").models[
        "small-curvature"
    ]
    detector = build_detector(config.spec("cpu"))
    await detector.load()
    try:
        texts = [
            "When on board H.M.S. Beagle, as naturalist, I was much struck with certain facts "
            "in the distribution of the inhabitants of South America.",
            "Overall, effective time management is essential for achieving both personal and "
            "professional goals. By prioritizing tasks and minimizing distractions, individuals "
            "can significantly enhance their productivity.",
        ]
        scores = detector.predict_batch(texts)
        assert detector.version.startswith(config.version + "+sha256:")
        assert [set(s.details) for s in scores] == [set(FEATURES)] * 2
        assert all(0.0 <= s.score <= 1.0 for s in scores)
        alone = [detector.predict_batch([t])[0].score for t in texts]
        # One text per int8 pass: a score never depends on its batch neighbours.
        assert [s.score for s in scores] == alone
    finally:
        await detector.unload()
