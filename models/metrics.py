"""Binary detection metrics with the contract's keys.

``label`` 1 (AI) is the positive class; a text is called AI when ``score >= threshold``.
Undefined values (AUROC with a single class, TPR without positives, ...) are ``None`` so
the JSON stays valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

KEYS = (
    "n",
    "auroc",
    "accuracy",
    "f1",
    "tpr_at_1pct_fpr",
    "fpr_at_threshold",
    "tpr_at_threshold",
    "texts_per_s",
)
"""Exactly the keys ``deepfake-stream evaluate --json`` prints (in this order)."""


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve via the Mann-Whitney U statistic; ties count one half."""
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)  # average ranks for ties
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, max_fpr: float = 0.01) -> float | None:
    """The highest TPR of any decision threshold whose FPR is at most ``max_fpr``.

    Thresholds are the observed scores (plus "flag nothing"); a text is flagged when
    ``score >= t``. FPR only grows as ``t`` falls, so this is the TPR at the lowest score
    still within budget: an actual operating point, never interpolated between ROC
    points. With fewer than ``1 / max_fpr`` human texts the budget is zero false positives.
    """
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], pos[order]
    tp, fp = np.cumsum(p), np.cumsum(~p)
    # Only the last index of each run of equal scores is a real threshold.
    last = np.r_[s[1:] != s[:-1], True]
    ok = last & (fp / n_neg <= max_fpr + 1e-12)
    return float(tp[ok].max() / n_pos) if ok.any() else 0.0


def binary_metrics(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    threshold: float | np.ndarray = 0.5,
) -> dict[str, Any]:
    """``n``, ``auroc``, ``accuracy``, ``f1`` (of the AI class, 0 when undefined),
    ``tpr_at_1pct_fpr``, and the share of human texts (``fpr_at_threshold``) and of AI texts
    (``tpr_at_threshold``) flagged at ``threshold``; the caller adds ``texts_per_s``.
    With one class only, what needs the other class is ``None``."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels and scores differ in shape: {y.shape} vs {s.shape}")
    if y.size == 0:
        raise ValueError("no examples to score")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (human) or 1 (AI)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    pred = s >= threshold
    truth = y == 1
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    denom = 2 * tp + fp + fn
    return {
        "n": int(y.size),
        "auroc": auroc(y, s),
        "accuracy": float((pred == truth).mean()),
        "f1": float(2 * tp / denom) if denom else 0.0,
        "tpr_at_1pct_fpr": tpr_at_fpr(y, s, 0.01),
        "fpr_at_threshold": float(pred[~truth].mean()) if (~truth).any() else None,
        "tpr_at_threshold": float(pred[truth].mean()) if truth.any() else None,
    }


_ROWS = (
    ("n", "n", "{:d}"),
    ("auroc", "AUROC", "{:.4f}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("f1", "F1", "{:.4f}"),
    ("tpr_at_1pct_fpr", "TPR @ 1% FPR", "{:.4f}"),
    ("fpr_at_threshold", "FPR @ thresh", "{:.4f}"),
    ("tpr_at_threshold", "TPR @ thresh", "{:.4f}"),
    ("texts_per_s", "texts/s", "{:,.1f}"),
)


def metrics_table(metrics: dict[str, Any]) -> str:
    """The metrics as a two-column table, for people (``--json`` is for programs)."""
    lines = [f"{'metric':<14}{'value':>12}"]
    for key, label, fmt in _ROWS:
        if key in metrics:
            value = metrics[key]
            text = "n/a" if value is None else fmt.format(value)
            lines.append(f"{label:<14}{text:>12}")
    return "\n".join(lines)
