"""Operating points and confidence bands: the one place a score becomes a decision.

An operating point is a named threshold chosen at a target false positive rate on human texts
the model was not fitted on (``deepfake-stream calibrate``); confidence bands are score
regions whose measured precision is stored next to them. Both live in the registry
(models/registry.yaml). :func:`decide` is what every verdict builder (worker, replay, shim)
calls; :func:`choose_threshold` and :func:`fit_bands` are what ``calibrate`` measures with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from deepfake_stream.core.errors import InvalidInput

Confidence = Literal["high", "medium", "low"]

TARGETS: dict[str, float] = {"strict": 0.001, "balanced": 0.01, "sensitive": 0.05}
"""The documented operating points and their target FPR on held-out human texts."""
DEFAULT_OPERATING_POINT = "balanced"
DOMAIN_FPR_FACTOR = 2.0
"""A point's threshold also keeps each domain's human texts flagged at most this many times
its target (where a domain has enough of them to measure it): a pooled 1% can hide one
domain's writers at 8% (issue 8 asks for at most 2% in any domain at ``balanced``)."""
HIGH_PRECISION = 0.99
"""A band is ``high`` where at least this share of its verdicts were right (dev data)."""
MEDIUM_PRECISION = 0.90
MIN_BAND_N = 20
"""A band edge needs at least this many verdicts beyond it: one lucky text is no evidence."""


class OperatingPoint(BaseModel):
    """One documented operating point of a model, as measured by ``calibrate``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(ge=0.0, le=1.0)
    target_fpr: float = Field(ge=0.0, le=1.0)
    fpr: float | None = Field(None, ge=0.0, le=1.0)
    """Share of held-out human texts flagged at ``threshold``."""
    fpr_upper_95: float | None = Field(None, ge=0.0, le=1.0)
    """One-sided 95% Clopper-Pearson upper bound of the FPR: with few human texts a small
    target cannot be measured, only bounded."""
    tpr: float | None = Field(None, ge=0.0, le=1.0)
    n_human: int | None = Field(None, ge=0)
    n_ai: int | None = Field(None, ge=0)
    short_threshold: float | None = Field(None, ge=0.0, le=1.0)
    """The threshold for texts shorter than the model's ``min_words``, chosen at the same
    target FPR on short human texts (those under ``min_words`` and prefixes of the others):
    their scores are noisier, and one threshold for every length flagged 8% of one short
    domain's human texts (README, "A threshold of its own for short texts"). ``threshold``
    is then chosen on the human texts of at least ``min_words``. None: one threshold."""
    short_fpr: float | None = Field(None, ge=0.0, le=1.0)
    """Share of the short human texts flagged at ``short_threshold``."""
    short_n_human: int | None = Field(None, ge=0)
    max_domain_fpr: float | None = Field(None, ge=0.0, le=1.0)
    """The cap ``calibrate`` held each domain's long and short human texts to, on its data,
    where there were at least ``1 / max_domain_fpr`` of them. None: no cap."""

    def threshold_for(self, words: int | None, min_words: int) -> float:
        """The threshold of a text of ``words`` words (None: unknown, the long texts' one)."""
        if self.short_threshold is not None and words is not None and words < min_words:
            return self.short_threshold
        return self.threshold


class ConfidenceBands(BaseModel):
    """Score edges of the confidence bands, and the precision measured in each band.

    An ``ai`` verdict is ``high`` when ``score >= ai_high``, ``medium`` when
    ``score >= ai_medium``, else ``low``; a ``human`` verdict is ``high`` when
    ``score < human_high``, ``medium`` when ``score < human_medium``, else ``low``. An edge
    of null means that band was never reached on the calibration data (never ``high``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ai_high: float | None = Field(None, ge=0.0, le=1.0)
    ai_medium: float | None = Field(None, ge=0.0, le=1.0)
    human_high: float | None = Field(None, ge=0.0, le=1.0)
    human_medium: float | None = Field(None, ge=0.0, le=1.0)
    precision: dict[str, float | None] = Field(default_factory=dict)
    """Per band (``ai_high``, ``ai_medium``, ``ai_low``, ``human_*``): the share of its
    verdicts that were right, at the default operating point, on the calibration data."""
    n: dict[str, int] = Field(default_factory=dict)
    """Verdicts per band on the calibration data."""


class ModelSpec(Protocol):
    """What :func:`decide` needs of a registry entry
    (deepfake_stream.models.registry.ModelConfig)."""

    # Read-only (properties): the registry's entries are frozen.
    @property
    def model_id(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    @property
    def operating_points(self) -> Mapping[str, OperatingPoint]: ...
    @property
    def default_operating_point(self) -> str | None: ...
    @property
    def confidence(self) -> ConfidenceBands | None: ...
    @property
    def min_words(self) -> int: ...


@dataclass(frozen=True)
class Decision:
    threshold: float
    label: Literal["ai", "human"]
    confidence: Confidence
    operating_point: str | None


def resolve_operating_point(
    spec: ModelSpec, name: str | None, words: int | None = None
) -> tuple[str | None, float]:
    """``(name, threshold)`` of ``name`` (None: the registry's default) for a text of
    ``words`` words (a point with a ``short_threshold`` has one per length; None: the long
    texts'). An operating point the model does not document is the item's fault:
    ``invalid_schema``."""
    if name is None:
        name = spec.default_operating_point
        if name is None:  # an uncalibrated model: the registry's plain threshold
            return None, spec.threshold
    point = spec.operating_points.get(name)
    if point is None:
        known = sorted(spec.operating_points) or "none (not calibrated)"
        raise InvalidInput(
            "invalid_schema",
            f"operating_point {name!r} is not documented for model {spec.model_id!r}; "
            f"documented: {known}",
        )
    return name, point.threshold_for(words, spec.min_words)


def confidence_of(score: float, label: str, bands: ConfidenceBands | None) -> Confidence:
    """The band of ``score`` for a verdict of ``label``; an uncalibrated model is ``low``."""
    if bands is None:
        return "low"
    if label == "ai":
        if bands.ai_high is not None and score >= bands.ai_high:
            return "high"
        if bands.ai_medium is not None and score >= bands.ai_medium:
            return "medium"
        return "low"
    if bands.human_high is not None and score < bands.human_high:
        return "high"
    if bands.human_medium is not None and score < bands.human_medium:
        return "medium"
    return "low"


def decide(
    score: float, spec: ModelSpec, operating_point: str | None = None, words: int | None = None
) -> Decision:
    """Threshold, label, confidence and operating point of one score of a text of ``words``
    words (pure)."""
    name, threshold = resolve_operating_point(spec, operating_point, words)
    label: Literal["ai", "human"] = "ai" if score >= threshold else "human"
    return Decision(
        threshold=threshold,
        label=label,
        confidence=confidence_of(score, label, spec.confidence),
        operating_point=name,
    )


# --- measuring (calibrate) -------------------------------------------------------------


def _round_up(x: float, digits: int = 6) -> float:
    """The smallest ``digits``-decimal number strictly above ``x`` (at most 1.0), so a
    threshold written to YAML never flags a text the unrounded one would not."""
    step = 10.0**-digits
    return min(1.0, (math.floor(x / step + 1e-9) + 1) * step)


def choose_threshold(human_scores: Sequence[float] | np.ndarray, target_fpr: float) -> float:
    """The lowest threshold (``score >= t`` is flagged) that flags at most ``target_fpr`` of
    ``human_scores``. With fewer than ``1 / target_fpr`` texts that is zero of them."""
    h = np.sort(np.asarray(human_scores, dtype=np.float64))[::-1]
    if h.size == 0:
        raise ValueError("no human texts to choose a threshold on")
    allowed = math.floor(target_fpr * h.size + 1e-9)
    if allowed >= h.size:
        return 0.0
    return round(_round_up(float(h[allowed])), 6)


def fpr_upper_bound(false_positives: int, n: int, confidence: float = 0.95) -> float | None:
    """One-sided Clopper-Pearson upper bound of a rate seen as ``false_positives`` of ``n``."""
    if n <= 0:
        return None
    if false_positives >= n:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(confidence, false_positives + 1, n - false_positives))


def measure_point(
    labels: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray
) -> dict[str, Any]:
    """FPR (with its upper bound) and TPR of ``threshold`` (one, or one per text) on labelled
    scores."""
    flagged = scores >= np.broadcast_to(np.asarray(threshold, dtype=np.float64), scores.shape)
    human, ai = flagged[labels == 0], flagged[labels == 1]
    fp = int(human.sum())
    upper = fpr_upper_bound(fp, human.size)  # None: no human texts
    return {
        "fpr": round(fp / human.size, 6) if human.size else None,
        "fpr_upper_95": round(upper, 6) if upper is not None else None,
        "tpr": round(float(ai.mean()), 6) if ai.size else None,
        "n_human": int(human.size),
        "n_ai": int(ai.size),
    }


def _edge(
    values: np.ndarray, right: np.ndarray, precision: float, ai_side: bool, min_n: int
) -> float | None:
    """The widest score edge whose verdicts beyond it were right at least ``precision`` of
    the time: for ``ai``, the lowest ``t`` with precision(score >= t) >= p; for ``human``,
    the highest ``t`` with precision(score < t) >= p."""
    order = np.argsort(-values if ai_side else values, kind="mergesort")
    v, r = values[order], right[order]
    cum_prec = np.cumsum(r) / np.arange(1, v.size + 1)
    last = np.r_[v[1:] != v[:-1], True]  # only whole runs of equal scores are thresholds
    ok = np.nonzero(last & (cum_prec >= precision) & (np.arange(v.size) >= min_n - 1))[0]
    if ok.size == 0:
        return None
    edge = float(v[ok.max()])
    # ai: flagged when score >= edge; human: high when score < edge, so step just past it.
    return math.floor(edge * 1e6 + 1e-6) / 1e6 if ai_side else round(_round_up(edge), 6)


def fit_bands(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    threshold: float | np.ndarray,
    *,
    high: float = HIGH_PRECISION,
    medium: float = MEDIUM_PRECISION,
    min_n: int = MIN_BAND_N,
) -> ConfidenceBands:
    """Band edges at ``high``/``medium`` precision on labelled scores, and each band's
    measured precision and size for verdicts at ``threshold`` (one, or one per text)."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), s.shape)
    edges = {
        "ai_high": _edge(s, y == 1, high, True, min_n),
        "ai_medium": _edge(s, y == 1, medium, True, min_n),
        "human_high": _edge(s, y == 0, high, False, min_n),
        "human_medium": _edge(s, y == 0, medium, False, min_n),
    }
    # medium never sits inside high (a noisy tail can make the 90% edge the narrower one).
    if edges["ai_high"] is not None and edges["ai_medium"] is not None:
        edges["ai_medium"] = min(edges["ai_medium"], edges["ai_high"])
    if edges["human_high"] is not None and edges["human_medium"] is not None:
        edges["human_medium"] = max(edges["human_medium"], edges["human_high"])
    bands = ConfidenceBands(**edges)
    correct: dict[str, float] = {}
    n: dict[str, int] = {}
    for score_, label_, t in zip(s, y, thresholds, strict=True):
        verdict = "ai" if score_ >= t else "human"
        key = f"{verdict}_{confidence_of(float(score_), verdict, bands)}"
        n[key] = n.get(key, 0) + 1
        correct[key] = correct.get(key, 0.0) + float((verdict == "ai") == (label_ == 1))
    precision: dict[str, float | None] = dict(correct)  # keys in the same order as ``n``
    for key in [f"{v}_{c}" for v in ("ai", "human") for c in ("high", "medium", "low")]:
        count = n.setdefault(key, 0)
        precision[key] = round(correct[key] / count, 4) if count else None
    return bands.model_copy(update={"precision": precision, "n": n})
