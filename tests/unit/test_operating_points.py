"""Operating points and confidence bands: choosing, storing, and deciding with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from deepfake_stream.consumers.scoring import Scored, prepare, verdict_for
from deepfake_stream.core.errors import ConfigError, InvalidInput
from deepfake_stream.models.calibration import min_words_from, subsample
from deepfake_stream.models.dataset import Example
from deepfake_stream.models.operating_points import (
    ConfidenceBands,
    choose_threshold,
    decide,
    fit_bands,
    fpr_upper_bound,
    measure_point,
)
from deepfake_stream.models.registry import DEFAULT_REGISTRY, load_registry, registry_from_dict
from deepfake_stream.models.registry_write import update_model
from deepfake_stream.schemas import RoutedItem

POINTS = {
    "strict": {"threshold": 0.9, "target_fpr": 0.001},
    "balanced": {"threshold": 0.6, "target_fpr": 0.01},
    "sensitive": {"threshold": 0.3, "target_fpr": 0.05},
}
BANDS = {"ai_high": 0.95, "ai_medium": 0.8, "human_high": 0.1, "human_medium": 0.2}


def _registry(**extra: object):  # type: ignore[no-untyped-def]
    entry = {"kind": "tfidf", "size": "tiny", "version": "1", **extra}
    return registry_from_dict({"models": {"m": entry}}, default_model="m", source="test.yaml")


def _calibrated():  # type: ignore[no-untyped-def]
    return _registry(
        operating_points=POINTS, default_operating_point="balanced", confidence=BANDS
    ).models["m"]


# --- choosing a threshold ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("target", [0.001, 0.01, 0.05, 0.2])
def test_chosen_threshold_flags_at_most_the_target_and_is_the_lowest_such(
    seed: int, target: float
) -> None:
    rng = np.random.default_rng(seed)
    human = rng.beta(2, 5, size=int(rng.integers(50, 3000)))
    t = choose_threshold(human, target)
    fpr = float((human >= t).mean())
    assert fpr <= target
    # One notch lower would flag one more human text: beyond the budget (or nothing left).
    below = human[human < t]
    if below.size:
        assert float((human >= below.max()).mean()) > target


def test_too_few_human_texts_means_no_false_positive_and_a_wide_bound() -> None:
    human = np.linspace(0.0, 0.5, 200)  # 200 < 1 / 0.001: the budget is zero texts
    t = choose_threshold(human, 0.001)
    assert t > 0.5 and float((human >= t).mean()) == 0.0
    bound = fpr_upper_bound(0, 200)
    assert bound is not None and 0.01 < bound < 0.02  # "rule of three": about 3 / n
    point = measure_point(np.zeros(200, dtype=int), human, t)
    assert point["fpr"] == 0.0 and point["fpr_upper_95"] == pytest.approx(bound, abs=1e-6)


# --- deciding ---------------------------------------------------------------------------


def test_label_follows_the_registry_default_and_the_items_operating_point() -> None:
    spec = _calibrated()
    assert spec.threshold == 0.6  # the default operating point's threshold
    assert decide(0.7, spec).label == "ai"
    assert decide(0.7, spec).operating_point == "balanced"
    assert decide(0.7, spec, "strict").label == "human"
    assert decide(0.7, spec, "strict").threshold == 0.9
    assert decide(0.4, spec, "sensitive").label == "ai"
    assert decide(0.4, spec).label == "human"


def test_unknown_operating_point_is_invalid_schema() -> None:
    with pytest.raises(InvalidInput) as info:
        decide(0.5, _calibrated(), "paranoid")
    assert info.value.reason == "invalid_schema" and "paranoid" in str(info.value)
    # A model without operating points documents none: any name is unknown.
    with pytest.raises(InvalidInput):
        decide(0.5, _registry().models["m"], "balanced")
    assert decide(0.5, _registry().models["m"]).operating_point is None


@pytest.mark.parametrize(
    ("score", "point", "expected"),
    [
        (0.99, None, ("ai", "high")),
        (0.85, None, ("ai", "medium")),
        (0.65, None, ("ai", "low")),
        (0.55, None, ("human", "low")),
        (0.15, None, ("human", "medium")),
        (0.05, None, ("human", "high")),
        (0.35, "sensitive", ("ai", "low")),
        (0.85, "strict", ("human", "low")),
        (0.97, "strict", ("ai", "high")),
    ],
)
def test_confidence_bands_are_applied(
    score: float, point: str | None, expected: tuple[str, str]
) -> None:
    d = decide(score, _calibrated(), point)
    assert (d.label, d.confidence) == expected


def _verdict(score: float, text: str):  # type: ignore[no-untyped-def]
    spec = _calibrated()
    item = RoutedItem.model_validate(
        {
            "id": "x",
            "text": text,
            "operating_point": "strict",
            "routing": {"model_id": "m", "target": "cpu", "first_seen_ms": 0},
        }
    )
    prepared = prepare(text, spec, max_windows=4)
    return verdict_for(
        item, prepared, Scored(score, None, 1), config=spec, model_version="1", backend="cpu"
    )


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.85, ("human", False, "low")), (0.97, ("ai", True, "high"))],
)
def test_the_verdict_builder_uses_the_decision(
    score: float, expected: tuple[str, bool, str]
) -> None:
    v = _verdict(score, "a plain sentence of words " * 20)
    assert (v.label, v.is_fake, v.confidence) == expected
    assert (v.threshold, v.operating_point, v.reasons) == (0.9, "strict", [])


SHORT_POINTS = {
    **POINTS,
    "balanced": {"threshold": 0.6, "target_fpr": 0.01, "short_threshold": 0.95},
}


def test_a_text_under_min_words_takes_its_points_short_threshold() -> None:
    spec = _registry(
        operating_points=SHORT_POINTS, default_operating_point="balanced", min_words=10
    ).models["m"]
    assert spec.threshold == 0.6  # the long texts' (and the registry's plain) threshold
    assert decide(0.8, spec, words=9).label == "human"  # 0.8 < 0.95
    assert decide(0.8, spec, words=9).threshold == 0.95
    assert decide(0.8, spec, words=10).label == "ai"  # at min_words: a long text
    assert decide(0.8, spec).threshold == 0.6  # words unknown: the long texts' threshold
    assert decide(0.8, spec, "strict", words=3).threshold == 0.9  # a point without one
    # The verdict builder counts the words (normalised, as too_short does).
    item = RoutedItem.model_validate(
        {
            "id": "x",
            "text": "five words of plain text",
            "routing": {"model_id": "m", "target": "cpu", "first_seen_ms": 0},
        }
    )
    for text, expected in (("five words of plain text", 0.95), ("word " * 12, 0.6)):
        item = item.model_copy(update={"text": text})
        v = verdict_for(
            item,
            prepare(text, spec, max_windows=4),
            Scored(0.8, None, 1),
            config=spec,
            model_version="1",
            backend="cpu",
        )
        assert v.threshold == expected and v.label == ("ai" if expected < 0.8 else "human")


def test_measured_points_and_bands_take_a_threshold_per_text() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.7, 0.7, 0.7, 0.99])
    per_text = np.array([0.6, 0.95, 0.95, 0.95])  # the first human text is a long one
    point = measure_point(labels, scores, per_text)
    assert (point["fpr"], point["tpr"]) == (0.5, 0.5)
    bands = fit_bands(labels, scores, per_text, min_n=1)
    assert bands.n["ai_low"] + bands.n.get("ai_high", 0) + bands.n.get("ai_medium", 0) == 2


def test_a_reason_not_to_trust_a_verdict_makes_it_low_whatever_the_band() -> None:
    v = _verdict(0.97, "too short")
    assert (v.label, v.confidence, v.reasons) == ("ai", "low", ["too_short"])


def test_fitted_bands_reach_their_precision() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(2000, dtype=int), np.ones(2000, dtype=int)]
    s = np.r_[rng.beta(2, 6, 2000), rng.beta(6, 2, 2000)]
    bands = fit_bands(y, s, threshold=0.5)
    assert bands.ai_high is not None and bands.human_high is not None
    assert bands.ai_high >= bands.ai_medium  # type: ignore[operator]
    assert bands.human_high <= bands.human_medium  # type: ignore[operator]
    assert bands.precision["ai_high"] >= 0.99 and bands.precision["human_high"] >= 0.99
    # The medium edge is where verdicts at or beyond it are still 90% right.
    assert float((y[s >= bands.ai_medium] == 1).mean()) >= 0.9  # type: ignore[operator]
    assert float((y[s < bands.human_medium] == 0).mean()) >= 0.9  # type: ignore[operator]
    assert bands.precision["ai_medium"] < bands.precision["ai_high"]
    assert bands.n["ai_high"] >= 20
    assert sum(bands.n.values()) == y.size


def test_a_band_needs_evidence() -> None:
    # Overlapping classes: no score region is 99% right with 20 verdicts behind it.
    y = np.r_[np.zeros(100, dtype=int), np.ones(100, dtype=int)]
    s = np.r_[np.linspace(0, 1, 100), np.linspace(0, 1, 100)]
    bands = fit_bands(y, s, threshold=0.5)
    assert bands.ai_high is None and bands.human_high is None
    assert decide(0.99, _registry(confidence=bands.model_dump()).models["m"]).confidence == "low"


# --- registry ---------------------------------------------------------------------------


def test_registry_refuses_two_sources_of_the_threshold_and_an_unknown_default() -> None:
    with pytest.raises(ConfigError, match="either threshold or operating_points"):
        _registry(threshold=0.5, operating_points=POINTS, default_operating_point="balanced")
    with pytest.raises(ConfigError, match="default_operating_point"):
        _registry(operating_points=POINTS, default_operating_point="nope")
    with pytest.raises(ConfigError):
        _registry(operating_points={"x": {"threshold": 1.5, "target_fpr": 0.01}})


def test_shipped_registry_documents_operating_points_for_every_model() -> None:
    registry = load_registry(DEFAULT_REGISTRY)
    calibrated = {mid for mid, config in registry.models.items() if config.operating_points}
    # The three models `make quality` calibrates; a model registered later may be uncalibrated.
    assert calibrated >= {"tiny-tfidf", "small-fusion", "small-perplexity"}
    for config in registry.models.values():
        if not config.operating_points:
            continue  # not calibrated yet: verdicts carry operating_point null
        assert set(config.operating_points) >= {"strict", "balanced", "sensitive"}
        assert config.default_operating_point == "balanced"
        point = config.operating_points["balanced"]
        assert point.fpr is not None and point.fpr_upper_95 is not None
        assert point.n_human and config.calibration and config.calibration["data"]
        assert config.min_words is not None and isinstance(config.confidence, ConfidenceBands)


def test_registry_write_keeps_comments_and_is_idempotent() -> None:
    text = DEFAULT_REGISTRY.read_text()
    fields = {
        "default_operating_point": "balanced",
        "operating_points": POINTS,
        "confidence": BANDS,
        "min_words": 40,
    }
    once = update_model(text, "tiny-tfidf", fields)
    twice = update_model(once, "tiny-tfidf", fields)
    assert once == twice

    def comments(t: str) -> list[str]:
        return [x for x in t.splitlines() if x.lstrip().startswith("#") and "calibrate" not in x]

    assert comments(once) == comments(text)  # every hand-written comment survives
    assert once.count("# Measured by `deepfake-stream calibrate`") >= 1
    doc = yaml.safe_load(once)
    entry = doc["models"]["tiny-tfidf"]
    assert "threshold" not in entry and entry["min_words"] == 40
    assert entry["operating_points"]["strict"]["threshold"] == 0.9
    assert doc["models"]["small-perplexity"] == yaml.safe_load(text)["models"]["small-perplexity"]
    registry_from_dict(doc, default_model="tiny-tfidf", source="x")


# --- calibration helpers ----------------------------------------------------------------


def test_subsample_caps_cells_and_keeps_pairs() -> None:
    rows = []
    for domain in ("a", "b"):
        for p in range(50):
            for label, suffix in ((0, "human"), (1, "ai")):
                rows.append(
                    Example(
                        text="t",
                        label=label,
                        id=f"{domain}{p}-{suffix}",
                        fields={"domain": domain},
                    )
                )
    kept = subsample(rows, 10)
    assert len(kept) == 40
    pairs: dict[str, set[int]] = {}
    for e in kept:
        pairs.setdefault(e.id.rsplit("-", 1)[0], set()).add(e.label)  # type: ignore[union-attr]
    assert all(labels == {0, 1} for labels in pairs.values())


def test_min_words_is_where_quality_stops_falling() -> None:
    assert min_words_from({10: 0.6, 25: 0.8, 50: 0.93, 100: 0.95}, 0.96) == 50
    assert min_words_from({10: 0.95, 25: 0.8, 50: 0.95}, 0.96) == 50
    assert min_words_from({10: 0.5, 50: 0.6}, 0.96) == 50  # never: the longest tested
    assert min_words_from({}, 0.9) is None


def test_dataset_keeps_other_fields(tmp_path: Path) -> None:
    from deepfake_stream.models.dataset import load_labelled

    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 0, "domain": "news", "n": 3}\n')
    (row,) = load_labelled(path)
    assert row.fields == {"label": 0, "domain": "news", "n": 3}


def _report(points: dict[str, dict]) -> dict:
    """A calibrate report with ``points`` and nothing measured beside them."""
    return {
        "operating_points": points,
        "confidence": {"precision": {}, "n": {}}
        | {k: None for k in ("ai_high", "ai_medium", "human_high", "human_medium")},
        "measured_at": "2026-12-06",
        "model_version": "1",
        "data": [],
        "command": "calibrate",
        "length": {"min_words": 150, "n": 0, "auroc_by_prefix_words": {}, "auroc_full": None},
        "per_set": {},
        "cross_set": {},
    }


def test_calibration_chooses_a_short_texts_threshold_on_short_humans_and_prefixes() -> None:
    from deepfake_stream.models.calibration import Lengths, choose_points, registry_fields

    rng = np.random.default_rng(0)
    # Long human texts score low, short ones (and prefixes of long ones) noisier and higher.
    words = np.r_[np.full(400, 300), np.full(200, 40), np.full(400, 300)]
    labels = np.r_[np.zeros(600, int), np.ones(400, int)]
    scores = np.r_[
        rng.uniform(0.0, 0.5, 400), rng.uniform(0.0, 0.9, 200), rng.uniform(0.4, 1.0, 400)
    ]
    prefixes = rng.uniform(0.0, 0.9, 800)
    lengths = Lengths(words, 150, prefixes)
    point = choose_points(labels, scores, {"balanced": 0.01}, lengths)["balanced"]
    long_human, pool = scores[:400], np.r_[scores[400:600], prefixes]
    assert point["threshold"] == choose_threshold(long_human, 0.01)
    assert point["short_threshold"] == choose_threshold(pool, 0.01) > point["threshold"]
    assert point["short_n_human"] == 1000 and point["short_fpr"] <= 0.01
    # Its FPR and TPR are of the verdicts: each text at the threshold for its length.
    per_text = np.where(words < 150, point["short_threshold"], point["threshold"])
    assert point["fpr"] == measure_point(labels, scores, per_text)["fpr"]
    # Too few short texts to measure the target: one threshold for every length, as before.
    few = choose_points(labels, scores, {"strict": 0.001}, Lengths(words, 150, prefixes[:10]))
    assert "short_threshold" not in few["strict"]
    assert few["strict"]["threshold"] == choose_threshold(scores[labels == 0], 0.001)
    # What calibrate writes: the short fields only where they were chosen.
    report = _report({"balanced": point, "strict": few["strict"]})
    fields = registry_fields(report)["operating_points"]
    assert fields["balanced"]["short_threshold"] == point["short_threshold"]
    assert "short_threshold" not in fields["strict"]
    entry = {"operating_points": fields, "default_operating_point": "balanced", "min_words": 150}
    spec = _registry(**entry).models["m"]  # the registry reads what calibrate writes
    assert decide(0.99, spec, words=40).threshold == point["short_threshold"]


def test_calibration_holds_every_domain_to_a_cap_of_twice_the_target() -> None:
    from deepfake_stream.models.calibration import Lengths, choose_points, registry_fields

    rng = np.random.default_rng(1)
    # A large domain scores low; a small one (200 human texts) sits higher: at the pooled 1%
    # point most of the flagged human texts are its own.
    domains = np.r_[np.full(1800, "set/a"), np.full(200, "set/b"), np.full(1000, "set/a")]
    labels = np.r_[np.zeros(2000, int), np.ones(1000, int)]
    scores = np.r_[
        rng.uniform(0.0, 0.6, 1800), rng.uniform(0.3, 0.8, 200), rng.uniform(0.5, 1, 1000)
    ]
    target = {"balanced": 0.01}
    plain = choose_points(labels, scores, target)["balanced"]
    capped = choose_points(labels, scores, target, domains=domains)["balanced"]
    b_human = scores[2000 - 200 : 2000]
    assert (b_human >= plain["threshold"]).mean() > 0.02  # the pooled point hides domain b
    assert capped["max_domain_fpr"] == 0.02
    assert capped["threshold"] == choose_threshold(b_human, 0.02) > plain["threshold"]
    assert (b_human >= capped["threshold"]).mean() <= 0.02
    assert capped["fpr"] <= plain["fpr"] and capped["tpr"] <= plain["tpr"]
    # A domain too small to measure the cap (under 1 / cap human texts) does not move it.
    few = np.r_[np.full(1960, "set/a"), np.full(40, "set/b"), np.full(1000, "set/a")]
    a_human = scores[:1960]
    assert choose_points(labels, scores, target, domains=few)["balanced"]["threshold"] == max(
        plain["threshold"], choose_threshold(a_human, 0.02)
    )
    # 0 turns it off; with short texts' thresholds each is held to the cap on its own texts.
    off = choose_points(labels, scores, target, domains=domains, domain_factor=0)["balanced"]
    assert off["threshold"] == plain["threshold"] and "max_domain_fpr" not in off
    words = np.r_[np.full(1800, 300), np.full(200, 40), np.full(1000, 300)]
    two = choose_points(
        labels, scores, target, Lengths(words, 150, rng.uniform(0, 0.6, 400)), domains
    )["balanced"]
    assert two["short_threshold"] >= choose_threshold(b_human, 0.02)
    assert (b_human >= two["short_threshold"]).mean() <= 0.02
    assert two["threshold"] == choose_threshold(scores[:1800], 0.01)  # domain a alone: no cap
    report = _report({"balanced": capped})
    fields = registry_fields(report)["operating_points"]["balanced"]
    assert fields["max_domain_fpr"] == 0.02
    entry = {"operating_points": {"balanced": fields}, "default_operating_point": "balanced"}
    assert _registry(**entry).models["m"].operating_points["balanced"].max_domain_fpr == 0.02


def test_calibrate_records_the_numerics_its_scores_depend_on() -> None:
    from deepfake_stream.models.calibration import model_card, registry_fields

    point = {"threshold": 0.9, "target_fpr": 0.01, "fpr": 0.0, "fpr_upper_95": 0.03}
    point |= {"tpr": 0.5, "n_human": 100, "n_ai": 100}
    report = _report({"balanced": point})
    assert "numerics" not in registry_fields(report)["calibration"]  # tiny-tfidf: none
    report["numerics"] = "oneDNN int8, AuthenticAMD, AVX2"
    assert registry_fields(report)["calibration"]["numerics"] == report["numerics"]
    assert "Scored on: oneDNN int8, AuthenticAMD, AVX2" in model_card("m", report)
