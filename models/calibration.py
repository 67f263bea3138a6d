"""Choose a model's operating points, confidence bands and minimum length on held-out data.

Everything is measured from one scoring pass over labelled sets the model was not fitted on
(the corpus's held-out split, the OOD dev sets): thresholds at target FPRs on the pooled
human texts, confidence bands on the pooled labelled scores, quality per set and per domain
at each operating point, the same thresholds chosen on all *other* sets and measured on each
set (cross-set: an honest figure, since the pooled thresholds saw every set), and AUROC of
text prefixes of a few lengths (where quality falls off: ``min_words``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_stream.models.dataset import DEFAULT_SEED, Example, load_labelled, select
from deepfake_stream.models.metrics import auroc, binary_metrics
from deepfake_stream.models.operating_points import (
    DEFAULT_OPERATING_POINT,
    DOMAIN_FPR_FACTOR,
    TARGETS,
    choose_threshold,
    fit_bands,
    measure_point,
)

LENGTH_DROP = 0.05
"""A prefix length is long enough when its AUROC is within this of the full texts'."""


@dataclass(frozen=True)
class DataSet:
    path: Path
    split: str  # all | test | train
    examples: list[Example] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name if self.split == "all" else f"{self.path.name}:{self.split}"


def parse_data_arg(value: str) -> tuple[Path, str]:
    """``FILE.jsonl`` (all of it) or ``FILE.jsonl:test`` (one side of train's split)."""
    head, sep, tail = value.rpartition(":")
    if sep and tail in ("all", "test", "train"):
        return Path(head), tail
    return Path(value), "all"


def _pair_key(example: Example) -> str:
    """What must stay together: the topic (corpus), else the id without -human/-ai."""
    if example.topic:
        return f"topic:{example.topic}"
    if example.id:
        return "id:" + re.sub(r"-(human|ai)$", "", example.id)
    return f"line:{example.line}"


def _domain(example: Example) -> str:
    value = example.fields.get("domain")
    return value if isinstance(value, str) else "null"


def set_domains(sets: Sequence[DataSet]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per set, each text's domain, and the same keyed by its set (``set/domain``): the cap
    counts domains that way, because two sets' "news" are different writers."""
    domains = [np.asarray([_domain(e) for e in s.examples], dtype=str) for s in sets]
    keyed = [
        np.asarray([f"{s.name}/{d}" for d in ds], dtype=str)
        for s, ds in zip(sets, domains, strict=True)
    ]
    return domains, keyed


def subsample(
    examples: Sequence[Example], per_cell: int, seed: int = DEFAULT_SEED
) -> list[Example]:
    """Up to ``per_cell`` texts per (domain, label), whole pairs first: pairs are taken in a
    seeded hash order, and a pair's texts join while their cell has room (a topic's human
    text with as many of its AI rewrites as fit). Keeps the input order."""
    pairs: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        pairs.setdefault(_pair_key(e), []).append(i)
    order = sorted(pairs, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    counts: dict[tuple[str, int], int] = {}
    keep: list[int] = []
    for key in order:
        for i in pairs[key]:
            cell = (_domain(examples[i]), examples[i].label)
            if counts.get(cell, 0) < per_cell:
                counts[cell] = counts.get(cell, 0) + 1
                keep.append(i)
    return [examples[i] for i in sorted(keep)]


def load_sets(
    specs: Sequence[str], *, per_cell: int | None, seed: int = DEFAULT_SEED
) -> list[DataSet]:
    sets = []
    for spec in specs:
        path, split = parse_data_arg(spec)
        examples = select(load_labelled(path), split, seed=seed)
        if per_cell is not None:
            examples = subsample(examples, per_cell, seed)
        sets.append(DataSet(path=path, split=split, examples=examples))
    return sets


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


@dataclass(frozen=True)
class Lengths:
    """What length-aware thresholds are chosen with: each text's words, the model's
    ``min_words``, and the scores of short stand-ins (prefixes shorter than ``min_words`` of
    human texts that are not) that join the short human texts."""

    words: np.ndarray
    min_words: int
    short_humans: np.ndarray

    def short(self) -> np.ndarray:
        return self.words < self.min_words

    def take(self, mask: np.ndarray) -> Lengths:
        return Lengths(self.words[mask], self.min_words, self.short_humans)


def point_thresholds(point: dict[str, Any], lengths: Lengths | None, n: int) -> np.ndarray:
    """Each text's threshold at ``point`` (its short texts' one below ``min_words``)."""
    if lengths is None or point.get("short_threshold") is None:
        return np.full(n, point["threshold"])
    return np.where(lengths.short(), point["short_threshold"], point["threshold"])


def _capped(threshold: float, human: np.ndarray, domains: np.ndarray, cap: float) -> float:
    """``threshold``, raised where needed so that no domain with at least ``1 / cap`` of the
    ``human`` scores has more than ``cap`` of them flagged (smaller domains cannot measure
    it, and :func:`choose_threshold` would then flag none of them)."""
    for domain in np.unique(domains):
        own = human[domains == domain]
        if own.size * cap >= 1:
            threshold = max(threshold, choose_threshold(own, cap))
    return threshold


def choose_points(
    labels: np.ndarray,
    scores: np.ndarray,
    targets: dict[str, float],
    lengths: Lengths | None = None,
    domains: np.ndarray | None = None,
    domain_factor: float = DOMAIN_FPR_FACTOR,
) -> dict[str, dict[str, Any]]:
    """Each target's threshold on the human scores, and its FPR/TPR on all of them. With
    ``lengths``, one threshold for texts of at least ``min_words`` chosen on those human texts,
    and one for shorter texts chosen on the short human texts and the stand-ins, where both
    sides have enough texts to measure the target; else one threshold for every length.
    With ``domains`` (one per text) and a ``domain_factor``, each threshold is then raised
    until no domain's human texts it applies to are flagged at more than ``domain_factor``
    times the target (:func:`_capped`)."""
    points = {}
    human = labels == 0
    for name, target in targets.items():
        point: dict[str, Any] = {"target_fpr": target}
        long = np.ones(labels.size, dtype=bool)  # the texts ``threshold`` applies to
        pool = np.empty(0)
        if lengths is not None:
            pool = np.concatenate([scores[human & lengths.short()], lengths.short_humans])
            long_human = scores[human & ~lengths.short()]
            if min(pool.size, long_human.size) * target >= 1:
                long = ~lengths.short()
                point["threshold"] = choose_threshold(long_human, target)
                point["short_threshold"] = choose_threshold(pool, target)
        if "threshold" not in point:
            point["threshold"] = choose_threshold(scores[human], target)
        if domains is not None and domain_factor > 0:
            cap = point["max_domain_fpr"] = min(1.0, domain_factor * target)
            on = human & long
            point["threshold"] = _capped(point["threshold"], scores[on], domains[on], cap)
            if "short_threshold" in point:
                on = human & ~long
                point["short_threshold"] = _capped(
                    point["short_threshold"], scores[on], domains[on], cap
                )
        if "short_threshold" in point:
            point["short_fpr"] = _r(float((pool >= point["short_threshold"]).mean()), 6)
            point["short_n_human"] = int(pool.size)
        per_text = point_thresholds(point, lengths, scores.size)
        points[name] = {**point, **measure_point(labels, scores, per_text)}
    return points


def _quality(
    labels: np.ndarray,
    scores: np.ndarray,
    points: dict[str, dict],
    lengths: Lengths | None = None,
) -> dict[str, Any]:
    """n, AUROC and FPR/TPR at each operating point's thresholds."""
    out: dict[str, Any] = {
        "n": int(labels.size),
        "n_human": int((labels == 0).sum()),
        "auroc": _r(auroc(labels, scores)),
    }
    for name, point in points.items():
        m = measure_point(labels, scores, point_thresholds(point, lengths, scores.size))
        out[name] = {"fpr": _r(m["fpr"]), "tpr": _r(m["tpr"])}
    return out


SHORT_PREFIXES = (50, 100)
"""Prefix lengths (words) of human texts that stand in for short texts where a point's short
texts' threshold is chosen (``calibrate``)."""


def prefix(text: str, words: int) -> str:
    return " ".join(text.split()[:words])


def min_words_from(by_length: dict[int, float | None], full: float | None) -> int | None:
    """The shortest prefix length from which on every measured AUROC is within
    :data:`LENGTH_DROP` of the full texts'; the longest tested when none is."""
    if full is None or not by_length:
        return None
    lengths = sorted(by_length)
    good = None
    for k in reversed(lengths):
        value = by_length[k]
        if value is None or value < full - LENGTH_DROP:
            break
        good = k
    return good if good is not None else lengths[-1]


def length_sample(examples: Sequence[Example], n: int, seed: int) -> list[Example]:
    """``n`` texts, half human and half AI, in a seeded hash order."""

    def key(e: Example) -> str:
        return hashlib.sha256(f"{seed}:{e.line}:{e.id}".encode()).hexdigest()

    half = max(1, n // 2)
    humans = sorted((e for e in examples if e.label == 0), key=key)[:half]
    ais = sorted((e for e in examples if e.label == 1), key=key)[:half]
    return humans + ais


def analyse(
    sets: Sequence[DataSet],
    scores: Sequence[Sequence[float]],
    *,
    balanced_target: float = TARGETS[DEFAULT_OPERATING_POINT],
    lengths: Sequence[Lengths] | None = None,
    domain_factor: float = DOMAIN_FPR_FACTOR,
) -> dict[str, Any]:
    """Operating points, bands and the per-set/per-domain/cross-set figures of one model;
    with ``lengths`` (one per set), length-aware thresholds, and with ``domain_factor`` no
    domain of any set over that many times a point's target (:func:`choose_points`)."""
    targets = dict(TARGETS, balanced=balanced_target)
    labels = [np.asarray([e.label for e in s.examples]) for s in sets]
    arrays = [np.asarray(sc, dtype=np.float64) for sc in scores]
    all_y, all_s = np.concatenate(labels), np.concatenate(arrays)
    domains, keyed = set_domains(sets)

    def joined(idx: Sequence[int]) -> Lengths | None:
        if lengths is None:
            return None
        return Lengths(
            np.concatenate([lengths[i].words for i in idx]),
            lengths[0].min_words,
            np.concatenate([lengths[i].short_humans for i in idx]),
        )

    everything = joined(range(len(sets)))
    points = choose_points(all_y, all_s, targets, everything, np.concatenate(keyed), domain_factor)
    balanced = point_thresholds(points[DEFAULT_OPERATING_POINT], everything, all_s.size)
    bands = fit_bands(all_y, all_s, balanced)
    per_set = {}
    for i, (s, y, sc) in enumerate(zip(sets, labels, arrays, strict=True)):
        own = joined([i])
        per_set[s.name] = {
            "all": _quality(y, sc, points, own),
            "domains": {
                d: _quality(
                    y[domains[i] == d],
                    sc[domains[i] == d],
                    points,
                    None if own is None else own.take(domains[i] == d),
                )
                for d in sorted(set(domains[i]))
            },
            "bands": fit_bands(
                y, sc, point_thresholds(points[DEFAULT_OPERATING_POINT], own, sc.size)
            ).model_dump()["precision"],
        }
    cross = {}
    if len(sets) > 1:
        for i, s in enumerate(sets):
            others = [j for j in range(len(sets)) if j != i]
            others_y = np.concatenate([labels[j] for j in others])
            others_s = np.concatenate([arrays[j] for j in others])
            chosen = choose_points(
                others_y,
                others_s,
                targets,
                joined(others),
                np.concatenate([keyed[j] for j in others]),
                domain_factor,
            )
            cross[s.name] = {
                "thresholds_from": [sets[j].name for j in others],
                **_quality(labels[i], arrays[i], chosen, joined([i])),
                "thresholds": {k: v["threshold"] for k, v in chosen.items()},
                "short_thresholds": {k: v.get("short_threshold") for k, v in chosen.items()},
            }
    pooled = binary_metrics(all_y.tolist(), all_s.tolist(), balanced)
    return {
        "operating_points": points,
        "confidence": bands.model_dump(),
        "pooled": {k: _r(v) if isinstance(v, float) else v for k, v in pooled.items()},
        "per_set": per_set,
        "cross_set": cross,
    }


def _round_floats(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isnan(obj) else round(obj, 6)
    if isinstance(obj, dict):
        return {k: _round_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round_floats(v) for v in obj]
    return obj


def length_study(
    sample: Sequence[Example], full: Sequence[float], prefixes: Mapping[int, Sequence[float]]
) -> dict[str, Any]:
    """AUROC of the first k words of each sampled text, against the full texts'."""
    y = np.asarray([e.label for e in sample])
    full_auroc = auroc(y, np.asarray(full, dtype=np.float64))
    by_length = {k: _r(auroc(y, np.asarray(v, dtype=np.float64))) for k, v in prefixes.items()}
    return {
        "n": len(sample),
        "auroc_full": _r(full_auroc),
        "auroc_by_prefix_words": by_length,
        "min_words": min_words_from(by_length, full_auroc),
        "rule": f"shortest prefix from which AUROC stays within {LENGTH_DROP} of the full texts'",
    }


def registry_fields(report: dict[str, Any]) -> dict[str, Any]:
    """What ``calibrate`` writes into the model's registry entry."""
    points = {
        name: {
            k: point[k]
            for k in (
                "threshold",
                "target_fpr",
                "fpr",
                "fpr_upper_95",
                "tpr",
                "n_human",
                "n_ai",
                "short_threshold",
                "short_fpr",
                "short_n_human",
                "max_domain_fpr",
            )
            if k in point
        }
        for name, point in report["operating_points"].items()
    }
    fields: dict[str, Any] = {
        "default_operating_point": DEFAULT_OPERATING_POINT,
        "operating_points": points,
        "confidence": report["confidence"],
        "calibration": {
            "measured_at": report["measured_at"],
            "model_version": report["model_version"],
            "data": report["data"],
            "command": report["command"],
        },
    }
    if report.get("numerics"):  # thresholds hold on machines with these kernels
        fields["calibration"]["numerics"] = report["numerics"]
    if report["length"]["min_words"] is not None:  # unmeasurable: keep the registry's value
        fields["min_words"] = report["length"]["min_words"]
    return _round_floats(fields)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def model_card(model_id: str, report: dict[str, Any]) -> str:
    """The model card (Markdown) of one calibrate report."""
    names = list(report["operating_points"])
    out = [f"#### `{model_id}` ({report['model_version']}, measured {report['measured_at']})", ""]
    out.append(f"`{report['command']}`")
    out.append("")
    if report.get("numerics"):
        out += [
            f"Scored on: {report['numerics']} (the thresholds hold where it runs on these).",
            "",
        ]
    out.append(
        "| operating point | target FPR | threshold | FPR (95% upper) | TPR | n human / AI |"
    )
    out.append("|---|---|---|---|---|---|")
    for name, p in report["operating_points"].items():
        out.append(
            f"| `{name}` | {_pct(p['target_fpr'])} | {p['threshold']:.4f} | {_pct(p['fpr'])} "
            f"({_pct(p['fpr_upper_95'])}) | {_pct(p['tpr'])} | {p['n_human']} / {p['n_ai']} |"
        )
    capped = {n: p for n, p in report["operating_points"].items() if p.get("max_domain_fpr")}
    if capped:
        out += [
            "",
            "Each threshold also flags at most "
            + ", ".join(f"{_pct(p['max_domain_fpr'])} (`{n}`)" for n, p in capped.items())
            + " of any one domain's human texts it applies to, where a domain has enough of "
            "them to measure that.",
        ]
    short = {n: p for n, p in report["operating_points"].items() if p.get("short_threshold")}
    if short:
        out += [
            "",
            f"Texts under `min_words` ({report['length']['min_words']}) have thresholds of their "
            "own, chosen on the short human texts and the first "
            + " and ".join(map(str, SHORT_PREFIXES))
            + " words of the others (the threshold above is chosen on the human texts of at "
            "least `min_words`): "
            + ", ".join(
                f"`{n}` {p['short_threshold']:.4f} (FPR {_pct(p['short_fpr'])} of "
                f"{p['short_n_human']})"
                for n, p in short.items()
            )
            + ".",
        ]
    out += [
        "",
        "| set / domain | n (human) | AUROC | "
        + " | ".join(f"FPR / TPR `{n}`" for n in names)
        + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for set_name, figures in report["per_set"].items():
        rows = [(f"**{set_name}**", figures["all"])]
        rows += [(f"  {d}", q) for d, q in figures["domains"].items()]
        for label, q in rows:
            cells = " | ".join(f"{_pct(q[n]['fpr'])} / {_pct(q[n]['tpr'])}" for n in names)
            out.append(f"| {label} | {q['n']} ({q['n_human']}) | {_num(q['auroc'])} | {cells} |")
    if report["cross_set"]:
        out += ["", "Cross-set (thresholds chosen on the human texts of the other sets only):", ""]
        out.append("| set | AUROC | " + " | ".join(f"FPR / TPR `{n}`" for n in names) + " |")
        out.append("|---|---|" + "---|" * len(names))
        for set_name, q in report["cross_set"].items():
            cells = " | ".join(f"{_pct(q[n]['fpr'])} / {_pct(q[n]['tpr'])}" for n in names)
            out.append(f"| {set_name} | {_num(q['auroc'])} | {cells} |")
    bands = report["confidence"]
    out += [
        "",
        "Confidence bands (pooled data, verdicts at `balanced`): "
        + ", ".join(
            f"{k} {_pct(bands['precision'].get(k))} right (n={bands['n'].get(k, 0)})"
            for k in [f"{v}_{c}" for v in ("ai", "human") for c in ("high", "medium", "low")]
        )
        + f". Edges: ai_high {bands['ai_high']}, ai_medium {bands['ai_medium']}, "
        f"human_high {bands['human_high']}, human_medium {bands['human_medium']}.",
    ]
    length = report["length"]
    out += [
        "",
        f"Length (n={length['n']}, first k words): AUROC "
        + ", ".join(f"{k}: {_num(v)}" for k, v in length["auroc_by_prefix_words"].items())
        + f", full: {_num(length['auroc_full'])} -> `min_words: {length['min_words']}`.",
    ]
    return "\n".join(out)
