"""Tables, goals and the one JSON object of ``deepfake-stream bench``.

Goals (on this project's 2-CPU reference machine; ratios, because absolute figures drift
on shared machines while ratios taken side by side in one run hold):

* tiny-tfidf pipeline ≥ 0.85 x the bound for its work on this machine,
  2 / (2 / relay + 1 / offline batched): two hops of relay work plus one of scoring, each on
  one of the two cores (items/s at saturation);
* tiny-tfidf pipeline ≥ 1.10 x the FastStream peer (bench/peer.py: one FastStream batch
  subscriber, same detector, acks=all, commit after the handler, no router hop);
* every transformer pipeline (medium-embedding, ...) ≥ 0.90 x offline batched texts/s;
* medium-embedding batching gain on CPU ≥ 2.5x;
* p99 at 50% load ≤ WORKER_MAX_WAIT_MS + 3 x one configured batch's compute time;
* on a GPU: medium-embedding ≥ 10,000 texts/s through the pipeline at ≥ 0.80 x offline;
* the default model (MODELS_DEFAULT) ≥ 4 x the verdicts/s of ``small-perplexity``, today's
  transformers loop over SmolLM2, offline on the same texts in the same run (issue 8): each
  model's faster of batch 1 and its configured batch, so the baseline is not slowed by a
  batch size that does not suit it.

A missed goal says by how much (``short_by``) and what the run's CPU profile says stands
in the way (``why``: bench/cpu.py's per-process shares during the run that missed it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from deepfake_stream.bench.flow import FlowRun, percentile
from deepfake_stream.bench.model import ModelBench
from deepfake_stream.bench.pipeline import PipelineBench

RELAY_MODELS = frozenset({"tiny-tfidf"})
"""Pipelines compared with the relay; every other (transformer) model with offline batched."""
TFIDF_BOUND_RATIO = 0.85
TFIDF_PEER_RATIO = 1.10
IDLE_CPU_PERCENT = 5.0
TRANSFORMER_OFFLINE_RATIO = 0.90
GPU_OFFLINE_RATIO = 0.80
GPU_TEXTS_PER_S = 10_000.0
EMBEDDING_GAIN = 2.5
SPEED_BASELINE = "small-perplexity"
"""The model the default's speed is measured against (issue 8): today's SmolLM2 loop."""
DEFAULT_SPEED_RATIO = 4.0


@dataclass(frozen=True, kw_only=True)
class Goal:
    name: str
    target: str
    measured: str
    status: str
    """PASS, MISS, or N/A (not measured in this run: the reason is in ``measured``)."""
    short_by: str = ""
    """How far a MISS is from its target."""
    why: str = ""
    """A MISS: what the run's profile says stands in the way."""

    def as_dict(self) -> dict[str, str]:
        return {
            "goal": self.name,
            "target": self.target,
            "measured": self.measured,
            "status": self.status,
            "short_by": self.short_by,
            "why": self.why,
        }


def _status(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def pipeline_ratio(
    pipe: PipelineBench, relay: FlowRun | None, offline: ModelBench | None
) -> tuple[float | None, str]:
    """(ratio, what it is relative to) for one pipeline run."""
    if pipe.model_id in RELAY_MODELS:
        if relay is None or not relay.items_per_s:
            return None, "relay"
        return pipe.saturation.items_per_s / relay.items_per_s, "relay"
    if offline is None or offline.batched is None:
        return None, "offline batched"
    return pipe.saturation.items_per_s / offline.batched.texts_per_s, "offline batched"


def bound_items_per_s(relay: FlowRun | None, offline: ModelBench | None) -> float | None:
    """What the pipeline's work allows on this machine: the relay's two hops plus one
    offline batched scoring per item, spread over two cores: 2 / (2/relay + 1/offline)."""
    if relay is None or not relay.items_per_s or offline is None or offline.batched is None:
        return None
    return 2 / (2 / relay.items_per_s + 1 / offline.batched.texts_per_s)


def p99_bound_ms(max_wait_ms: float, offline: ModelBench | None) -> float | None:
    """WORKER_MAX_WAIT_MS + 3 x one configured batch's compute time (offline p50)."""
    if offline is None or offline.batched is None:
        return None
    return max_wait_ms + 3 * offline.batched.batch_ms_p50


def check_goals(
    *,
    relay: FlowRun | None,
    models: dict[str, ModelBench],
    pipelines: dict[str, PipelineBench],
    max_wait_ms: float,
    peers: dict[str, FlowRun] | None = None,
    idle: Any = None,
    default_model: str | None = None,
) -> list[Goal]:
    peers = peers or {}
    goals: list[Goal] = []
    if default_model is not None:
        goals.append(default_speed_goal(default_model, models))
    tf = pipelines.get("tiny-tfidf")
    bound = bound_items_per_s(relay, models.get("tiny-tfidf"))
    ratio = tf.saturation.items_per_s / bound if tf and bound else None
    goals.append(
        _at_least(
            "tiny-tfidf pipeline / bound",
            ratio,
            TFIDF_BOUND_RATIO,
            measured=None if ratio is None else f"{ratio:.2f} (bound {bound:,.0f}/s)",
            why=partial(_why_throughput, tf),
        )
    )
    peer = peers.get("tiny-tfidf")
    ratio = (
        tf.saturation.items_per_s / peer.items_per_s if tf and peer and peer.items_per_s else None
    )
    goals.append(
        _at_least(
            "tiny-tfidf pipeline / FastStream peer",
            ratio,
            TFIDF_PEER_RATIO,
            why=partial(_why_throughput, tf),
        )
    )
    emb = pipelines.get("medium-embedding")
    emb_offline = models.get("medium-embedding")
    on_gpu = emb is not None and emb.backend == "gpu"
    ratio, _ = pipeline_ratio(emb, None, emb_offline) if emb else (None, "")
    goals.append(
        _at_least(
            "medium-embedding pipeline / offline batched",
            ratio,
            GPU_OFFLINE_RATIO if on_gpu else TRANSFORMER_OFFLINE_RATIO,
            not_run=_why_not(emb_offline, emb),
            why=partial(_why_throughput, emb),
        )
    )
    for model_id, pipe in pipelines.items():
        if model_id in RELAY_MODELS or model_id == "medium-embedding":
            continue
        ratio, _ = pipeline_ratio(pipe, None, models.get(model_id))
        goals.append(
            _at_least(
                f"{model_id} pipeline / offline batched",
                ratio,
                TRANSFORMER_OFFLINE_RATIO,
                not_run="not measured",
                why=partial(_why_throughput, pipe),
            )
        )
    gain = emb_offline.gain if emb_offline else None
    device = emb_offline.device if emb_offline else None
    gain_on_cpu = device == "cpu"
    gain_missed = gain is not None and gain_on_cpu and gain < EMBEDDING_GAIN
    goals.append(
        Goal(
            name="medium-embedding batching gain (CPU)",
            target=f">= {EMBEDDING_GAIN:.1f}x",
            measured=(
                _why_not(emb_offline, None)
                if gain is None
                else f"{gain:.2f}x" + ("" if gain_on_cpu else f" on {device}")
            ),
            status="N/A" if gain is None or not gain_on_cpu else _status(gain >= EMBEDDING_GAIN),
            short_by=_short(gain, EMBEDDING_GAIN) if gain_missed and gain is not None else "",
            why=_why_gain(emb_offline) if gain_missed else "",
        )
    )
    if on_gpu and emb is not None:
        rate = emb.saturation.items_per_s
        goals.append(
            _at_least(
                "medium-embedding pipeline on GPU",
                rate,
                GPU_TEXTS_PER_S,
                target=f">= {GPU_TEXTS_PER_S:,.0f} texts/s",
                measured=f"{rate:,.0f} texts/s",
                why=partial(_why_throughput, emb),
            )
        )
    if idle is not None:
        goals.append(
            _at_most(
                "`up` idle CPU (all processes, broker too)",
                idle.cpu_percent,
                IDLE_CPU_PERCENT,
                target=f"<= {IDLE_CPU_PERCENT:.0f}% of one core",
                measured=f"{idle.cpu_percent:.1f}%",
                unit=" points",
                why=partial(_why_idle, idle),
            )
        )
        tf_offline = models.get("tiny-tfidf")
        point = tf_offline.batch1 if tf_offline and tf_offline.batch1 else None
        bound = max_wait_ms + (point.batch_ms_p50 if point else 0.0) + 50
        worst = max(idle.single_ms) if idle.single_ms else math.nan
        goals.append(
            _at_most(
                "single item after quiet (max of runs)",
                None if math.isnan(worst) else worst,
                bound,
                target=f"<= {bound:.0f} ms (max_wait {max_wait_ms:.0f} + batch + 50)",
                measured=f"{worst:.0f} ms",
                not_run="none arrived",
                missing_fails=True,
                unit=" ms",
                why=partial(_why_single, idle),
            )
        )
    for model_id, pipe in pipelines.items():
        bound = p99_bound_ms(max_wait_ms, models.get(model_id))
        p99 = pipe.half_load.latency_ms.get("p99", math.nan) if pipe.half_load else math.nan
        goals.append(
            _at_most(
                f"{model_id} p99 at 50% load",
                None if bound is None or math.isnan(p99) else p99,
                bound or 0.0,
                target="<= "
                + ("?" if bound is None else f"{bound:.0f} ms")
                + f" (max_wait {max_wait_ms:.0f} + 3 x batch)",
                measured=f"{p99:.0f} ms",
                not_run="not run" if math.isnan(p99) else f"{p99:.0f} ms",
                unit=" ms",
                why=partial(_why_p99, pipe),
            )
        )
    return goals


def best_texts_per_s(offline: ModelBench | None) -> float | None:
    """The faster of a model's batch-1 and configured-batch verdict rates, if measured."""
    rates = [p.texts_per_s for p in (offline.batch1, offline.batched) if p] if offline else []
    return max(rates) if rates else None


def default_speed_goal(default_model: str, models: dict[str, ModelBench]) -> Goal:
    """The default model's verdicts/s against ``small-perplexity``'s, side by side."""
    name = f"default model ({default_model}) / {SPEED_BASELINE}, texts/s"
    fast, base = (
        best_texts_per_s(models.get(default_model)),
        best_texts_per_s(models.get(SPEED_BASELINE)),
    )
    ratio = fast / base if fast is not None and base else None
    missing = [m for m, r in ((default_model, fast), (SPEED_BASELINE, base)) if r is None]
    return _at_least(
        name,
        ratio,
        DEFAULT_SPEED_RATIO,
        target=f">= {DEFAULT_SPEED_RATIO:.0f}x",
        measured=None if ratio is None else f"{ratio:,.1f}x ({fast:,.1f} / {base:,.2f} texts/s)",
        not_run=(
            f"{' and '.join(missing)} not measured: "
            f"bench model --model {default_model} --model {SPEED_BASELINE}"
        ),
        why=lambda: f"{default_model} would need {DEFAULT_SPEED_RATIO * (base or 0):,.2f} texts/s",
    )


def _short(value: float, want: float) -> str:
    return f"{want - value:.2f} ({(want - value) / want:.0%} of the target)"


def _at_least(
    name: str,
    value: float | None,
    want: float,
    *,
    target: str | None = None,
    measured: str | None = None,
    not_run: str = "not run",
    why: Callable[[], str],
) -> Goal:
    """A goal met at ``value >= want``; None: not measured (N/A, ``not_run`` says why)."""
    if value is None:
        return Goal(name=name, target=target or f">= {want:.2f}", measured=not_run, status="N/A")
    ok = value >= want
    return Goal(
        name=name,
        target=target or f">= {want:.2f}",
        measured=measured or f"{value:.2f}",
        status=_status(ok),
        short_by="" if ok else _short(value, want),
        why="" if ok else why(),
    )


def _at_most(
    name: str,
    value: float | None,
    limit: float,
    *,
    target: str,
    measured: str,
    unit: str,
    why: Callable[[], str],
    not_run: str = "not run",
    missing_fails: bool = False,
) -> Goal:
    """A goal met at ``value <= limit``; None: not measured (N/A, or MISS where
    ``missing_fails``: the thing measured never happened)."""
    if value is None:
        status = "MISS" if missing_fails else "N/A"
        return Goal(name=name, target=target, measured=not_run, status=status)
    ok = value <= limit
    return Goal(
        name=name,
        target=target,
        measured=measured,
        status=_status(ok),
        short_by="" if ok else f"{value - limit:.1f}{unit} over ({value / limit:.1f}x the target)",
        why="" if ok else why(),
    )


def _why_throughput(pipe: PipelineBench | None) -> str:
    """Whose CPU it was while the pipeline ran flat out."""
    share = pipe.cpu.get("saturation") if pipe else None
    if share is None:
        return "no CPU profile in this run (it reads /proc: Linux only)"
    text = f"at saturation, {share.summary()}"
    if share.full:
        others = share.machine_percent or 0.0
        others -= sum(v for k, v in share.per_process.items() if k.startswith("worker"))
        return (
            text + f"; the cores were full, so the {others:.0f}% that was not the workers' "
            "came off their scoring"
        )
    if share.machine_percent is None:
        return text
    idle = share.cores * 100 - share.machine_percent - (share.steal_percent or 0.0)
    return (
        text + f"; {idle:.0f}% of the cores stood idle: the workers waited (for fetches, acks "
        "or batching), not for CPU"
    )


def _why_gain(offline: ModelBench | None) -> str:
    """Batching fills cores that batch 1 leaves idle; none idle, nothing to gain."""
    one = offline.cpu.get("batch1") if offline else None
    many = offline.cpu.get("batched") if offline else None
    if one is None or many is None or one.machine_percent is None:
        return "no CPU profile in this run (it reads /proc: Linux only)"
    text = (
        f"the cores were {one.machine_percent:.0f}% busy at batch 1 and "
        f"{many.machine_percent or 0:.0f}% batched (of {one.cores * 100}%)"
    )
    if one.full:
        return text + (
            ": one text's windows already kept every core busy, so a bigger batch had no idle "
            "CPU to fill; only less work per window (a faster kernel, fewer tokens) adds texts/s"
        )
    return text + ": batch 1 left cores idle that the batched run did not fill"


def _why_p99(pipe: PipelineBench) -> str:
    """Whose CPU it was at half load, against what the same processes took flat out."""
    half, sat = pipe.cpu.get("half_load"), pipe.cpu.get("saturation")
    if half is None:
        return "no CPU profile in this run (it reads /proc: Linux only)"
    text = f"at 50% load, {half.summary()}"
    rates = (pipe.half_load.items_per_s if pipe.half_load else 0.0, pipe.saturation.items_per_s)
    if sat and half.machine_percent and sat.machine_percent and all(rates):
        # percent of a core / items per second, in ms of one core per item
        each_half = half.machine_percent * 10 / rates[0]
        each_sat = sat.machine_percent * 10 / rates[1]
        if each_half > 1.2 * each_sat:
            text += (
                f"; each item cost {each_half / each_sat:.1f}x the machine's CPU it cost flat out "
                f"({each_half:.2f} against {each_sat:.2f} ms of a core): paced items come a few "
                "per fetch and per batch, so each hop's fixed cost per request is shared by few"
            )
    broker_half = half.per_process.get("broker")
    broker_sat = sat.per_process.get("broker") if sat else None
    if broker_half is not None and broker_sat is not None and broker_half > broker_sat:
        text += (
            f"; the embedded broker took more CPU at half the items/s than flat out "
            f"({broker_half:.0f}% against {broker_sat:.0f}%), as Tansu's memory engine does "
            "once its topics hold many small record batches (tools/tansu_fetch_cost.py)"
        )
    if half.full:
        return text + "; the cores were full at half load, so batches queued for CPU"
    return text + "; the cores were not full: the latency is waiting (fetches, batching, acks)"


def _why_idle(idle: Any) -> str:
    top = ", ".join(f"{k} {v:.1f}%" for k, v in list(idle.per_process.items())[:4])
    return (
        f"{top}; every idle consumer (router, workers, store, the shim's readers) fetches "
        f"once per KAFKA_FETCH_IDLE_WAIT_MS ({idle.fetch_idle_wait_ms} ms) and the broker "
        "answers each"
    )


def _why_single(idle: Any) -> str:
    p50 = percentile(idle.single_ms, 50) if idle.single_ms else math.nan
    return (
        f"p50 {p50:.0f} ms; after a quiet spell each of the item's two hops (router, worker) "
        f"waits for its idle fetch (KAFKA_FETCH_IDLE_WAIT_MS {idle.fetch_idle_wait_ms} ms) to "
        "run out, because the embedded broker answers a waiting fetch only when its wait "
        "ends; a shorter wait costs idle CPU (the goal above)"
    )


def _why_not(offline: ModelBench | None, pipe: PipelineBench | None) -> str:
    if offline is not None and offline.error:
        return f"unavailable ({offline.error.split(':')[0]})"  # full error: model table, JSON
    if offline is None:
        return "not run"
    return "pipeline not run" if pipe is None else "not measured"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table; numbers right-aligned."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def render(
    *,
    relay: FlowRun | None,
    models: dict[str, ModelBench],
    pipelines: dict[str, PipelineBench],
    goals: Sequence[Goal],
    peers: dict[str, FlowRun] | None = None,
    idle: Any = None,
) -> str:
    peers = peers or {}
    parts: list[str] = []
    if idle is not None:
        parts.append(
            f"idle (`up`, no traffic, {idle.seconds:.0f} s, "
            f"KAFKA_FETCH_IDLE_WAIT_MS {idle.fetch_idle_wait_ms})\n"
            + table(
                ["process", "% of one core"],
                [*([k, v] for k, v in idle.per_process.items()), ["total", idle.cpu_percent]],
            )
            + "\nsingle item after quiet, ms: "
            + " ".join(f"{x:.0f}" for x in idle.single_ms)
        )
    if relay is not None:
        lat = relay.latency_ms
        parts.append(
            "relay (ceiling: two aiokafka hops, acks=all, commit after ack)\n"
            + table(
                ["n", "items/s", "p50 ms", "p95 ms", "p99 ms"],
                [[relay.n, relay.items_per_s, lat.get("p50"), lat.get("p95"), lat.get("p99")]],
            )
        )
    if models:
        rows: list[list[Any]] = []
        for m in models.values():
            if m.error:
                rows.append([m.model_id, m.device, "-", None, None, None, None, m.error[:60]])
                continue
            b1, bb = m.batch1, m.batched
            rows.append(
                [
                    m.model_id,
                    m.device,
                    m.configured_batch,
                    b1.texts_per_s if b1 else None,
                    bb.texts_per_s if bb else None,
                    m.gain,
                    m.model_only.texts_per_s if m.model_only else None,
                    "",
                ]
            )
        parts.append(
            "model (offline texts/s, scored as verdicts are: normalised, language, windows;"
            " model only: the detector alone on raw texts, batched)\n"
            + table(
                ["model", "device", "batch", "batch 1", "batched", "gain", "model only", "note"],
                rows,
            )
        )
        for m in models.values():
            if m.sweep:
                parts.append(
                    f"sweep {m.model_id} ({m.device})\n"
                    + table(
                        ["batch", "texts/s", "batch p50 ms", "batch p99 ms"],
                        [
                            [p.batch_size, p.texts_per_s, p.batch_ms_p50, p.batch_ms_p99]
                            for p in m.sweep
                        ],
                    )
                )
    if pipelines:
        rows = []
        for p in pipelines.values():
            ratio, vs = pipeline_ratio(p, relay, models.get(p.model_id))
            for label, run in (("saturation", p.saturation), ("50% load", p.half_load)):
                if run is None:
                    continue
                rows.append(
                    [
                        p.model_id,
                        f"{p.backend} x{p.workers}",
                        label,
                        run.n,
                        run.items_per_s,
                        run.latency_ms.get("p50"),
                        run.latency_ms.get("p95"),
                        run.latency_ms.get("p99"),
                        run.batch_sizes.get("p50"),
                        (f"{ratio:.2f} x {vs}" if ratio is not None else "-")
                        if run is p.saturation
                        else "",
                    ]
                )
        parts.append(
            "pipeline (publish -> verdict, end to end)\n"
            + table(
                [
                    "model",
                    "workers",
                    "load",
                    "n",
                    "items/s",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "batch p50",
                    "ratio",
                ],
                rows,
            )
        )
    side = side_by_side(relay, models, pipelines, peers)
    if side:
        parts.append(
            "side by side (items/s at saturation, same broker, same texts)\n"
            + table(["what", "items/s", "pipeline / this"], side)
        )
    stores = [p for p in pipelines.values() if p.store is not None]
    if stores:
        parts.append(
            "store (saturation run's verdicts -> database rows, committed)\n"
            + table(
                [
                    "model",
                    "database",
                    "rows",
                    "rows/s",
                    "pipeline items/s",
                    "lag s",
                    "store alone rows/s",
                    "keeps up",
                ],
                [
                    [
                        p.model_id,
                        p.store.database,
                        f"{p.store.rows}/{p.store.n}",
                        p.store.rows_per_s,
                        p.store.pipeline_items_per_s,
                        p.store.lag_s,
                        p.store.capacity_rows_per_s,
                        "yes" if p.store.keeps_up else "NO",
                    ]
                    for p in stores
                    if p.store is not None
                ],
            )
        )
    cpus = [
        *(
            (f"{m.model_id} offline {point}", c)
            for m in models.values()
            for point, c in m.cpu.items()
        ),
        *(
            (f"{p.model_id} pipeline {phase}", c)
            for p in pipelines.values()
            for phase, c in p.cpu.items()
        ),
    ]
    if cpus:
        parts.append(
            "cpu (% of one core; bench: this process, the offline models and the load's producer"
            " and reader)\n" + "\n".join(f"{what}: {c.summary()}" for what, c in cpus)
        )
    if goals:
        parts.append(
            "goals\n"
            + table(
                ["goal", "target", "measured", "status", "short by"],
                [[g.name, g.target, g.measured, g.status, g.short_by] for g in goals],
            )
        )
        if misses := [g for g in goals if g.status == "MISS" and g.why]:
            parts.append(
                "what stands in the way (the run's CPU profile)\n"
                + "\n".join(f"- {g.name}: {g.why}" for g in misses)
            )
    return "\n\n".join(parts)


def side_by_side(
    relay: FlowRun | None,
    models: dict[str, ModelBench],
    pipelines: dict[str, PipelineBench],
    peers: dict[str, FlowRun],
) -> list[list[Any]]:
    """The issue-10 table: relay, offline, bound, FastStream peer, pipeline, per relay model."""
    rows: list[list[Any]] = []
    for model_id, pipe in pipelines.items():
        if model_id not in RELAY_MODELS:
            continue
        mine = pipe.saturation.items_per_s
        offline = models.get(model_id)
        figures: list[tuple[str, float | None]] = [
            (
                "do-nothing relay, two aiokafka hops, two processes",
                relay.items_per_s if relay else None,
            ),
            (
                f"{model_id} offline, one process, batches of "
                f"{offline.configured_batch if offline else '?'}",
                offline.batched.texts_per_s if offline and offline.batched else None,
            ),
            ("bound: 2 / (2/relay + 1/offline)", bound_items_per_s(relay, offline)),
            (
                f"FastStream batch subscriber, {model_id}, no router hop",
                peers[model_id].items_per_s if model_id in peers else None,
            ),
        ]
        for what, value in figures:
            rows.append([what, value, f"{mine / value:.2f}" if value else "-"])
        rows.append([f"deepfake-stream pipeline ({pipe.backend} x{pipe.workers})", mine, ""])
    return rows


def as_json(
    *,
    meta: dict[str, Any],
    relay: FlowRun | None,
    models: dict[str, ModelBench],
    pipelines: dict[str, PipelineBench],
    goals: Sequence[Goal],
    peers: dict[str, FlowRun] | None = None,
    idle: Any = None,
) -> dict[str, Any]:
    peers = peers or {}
    out_pipes = {}
    for model_id, p in pipelines.items():
        ratio, vs = pipeline_ratio(p, relay, models.get(model_id))
        bound = bound_items_per_s(relay, models.get(model_id)) if model_id in RELAY_MODELS else None
        peer = peers.get(model_id)
        out_pipes[model_id] = {
            **p.as_dict(),
            "ratio": None if ratio is None else round(ratio, 3),
            "ratio_to": vs,
            "bound_items_per_s": None if bound is None else round(bound, 1),
            "ratio_to_bound": None if not bound else round(p.saturation.items_per_s / bound, 3),
            "ratio_to_peer": (
                round(p.saturation.items_per_s / peer.items_per_s, 3)
                if peer and peer.items_per_s
                else None
            ),
        }
    return {
        **meta,
        "peers": {k: v.as_dict() for k, v in peers.items()},
        "idle": idle.as_dict() if idle is not None else None,
        "relay": relay.as_dict() if relay else None,
        "models": {k: m.as_dict() for k, m in models.items()},
        "pipelines": out_pipes,
        "goals": [g.as_dict() for g in goals],
    }
