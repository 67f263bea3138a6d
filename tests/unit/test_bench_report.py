"""bench: percentiles, ratios, goal verdicts and the report's JSON (no broker)."""

from __future__ import annotations

import json
import math

import pytest

from deepfake_stream.bench.cpu import CpuShare
from deepfake_stream.bench.flow import FlowRun, percentile, summarise
from deepfake_stream.bench.model import BatchPoint, ModelBench
from deepfake_stream.bench.pipeline import PipelineBench
from deepfake_stream.bench.report import (
    Goal,
    as_json,
    check_goals,
    p99_bound_ms,
    render,
    table,
)
from deepfake_stream.bench.texts import load_texts, sample_texts


def run(rate: float, p99: float = 100.0, n: int = 1000) -> FlowRun:
    return FlowRun(
        n=n,
        received=n,
        duplicates=0,
        seconds=n / rate,
        items_per_s=rate,
        latency_ms={"p50": p99 / 2, "p95": p99 * 0.9, "p99": p99},
    )


def point(batch: int, rate: float) -> BatchPoint:
    ms = batch / rate * 1000
    return BatchPoint(
        batch_size=batch,
        texts=batch * 10,
        seconds=batch * 10 / rate,
        texts_per_s=rate,
        batch_ms_p50=ms,
        batch_ms_p99=ms * 1.2,
    )


def model(model_id: str, b1: float, batched: float, batch: int = 64) -> ModelBench:
    return ModelBench(
        model_id=model_id,
        configured_batch=batch,
        batch1=point(1, b1),
        batched=point(batch, batched),
    )


def pipe(model_id: str, sat: float, half_p99: float, backend: str = "cpu") -> PipelineBench:
    return PipelineBench(
        model_id=model_id,
        backend=backend,
        workers=1,
        mode="processes",
        saturation=run(sat, p99=5000),
        half_load=run(sat / 2, p99=half_p99),
    )


def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7.0
    assert percentile([3, 1, 2], 50) == 2  # unsorted input
    assert math.isnan(percentile([], 50))
    assert summarise([1, 2, 3, 4]) == {"p50": 2, "p95": 4, "p99": 4}


def test_goals_pass_and_miss_by_their_thresholds() -> None:
    models = {
        "tiny-tfidf": model("tiny-tfidf", 400, 450),
        "medium-embedding": model("medium-embedding", 10, 30, batch=64),
    }
    # embedding batch of 64 at 30 texts/s: 2133 ms; bound = 20 + 3 * 2133
    pipes = {
        "tiny-tfidf": pipe("tiny-tfidf", 403, half_p99=400),
        "medium-embedding": pipe("medium-embedding", 27.5, half_p99=7000),
    }
    peers = {"tiny-tfidf": run(366)}
    goals = {
        g.name: g
        for g in check_goals(
            relay=run(1000), models=models, pipelines=pipes, peers=peers, max_wait_ms=20
        )
    }
    # bound = 2 / (2/1000 + 1/450) = 473.7/s; 403 / 473.7 = 0.851
    assert goals["tiny-tfidf pipeline / bound"].status == "PASS"
    assert goals["tiny-tfidf pipeline / bound"].measured == "0.85 (bound 474/s)"
    assert goals["tiny-tfidf pipeline / FastStream peer"].status == "PASS"  # 1.101
    assert goals["medium-embedding pipeline / offline batched"].status == "PASS"  # 0.917
    assert goals["medium-embedding batching gain (CPU)"].status == "PASS"  # 3.0x
    assert goals["medium-embedding batching gain (CPU)"].measured == "3.00x"
    assert all(g.short_by == g.why == "" for g in goals.values() if g.status != "MISS")
    # tfidf bound: 20 + 3 * (64 / 450 s) = 446.7 ms; 400 ms passes
    assert goals["tiny-tfidf p99 at 50% load"].status == "PASS"
    assert goals["medium-embedding p99 at 50% load"].status == "MISS"  # 7000 > 6420

    slower = {"tiny-tfidf": pipe("tiny-tfidf", 400, half_p99=450)}
    goals = {
        g.name: g
        for g in check_goals(
            relay=run(1000), models=models, pipelines=slower, peers=peers, max_wait_ms=20
        )
    }
    assert goals["tiny-tfidf pipeline / bound"].status == "MISS"  # 0.844
    assert goals["tiny-tfidf pipeline / FastStream peer"].status == "MISS"  # 1.093
    assert goals["tiny-tfidf p99 at 50% load"].status == "MISS"


def share(busy: float, **per: float) -> CpuShare:
    return CpuShare(seconds=10, cores=2, machine_percent=busy, steal_percent=0, per_process=per)


def test_a_miss_says_by_how_much_and_whose_cpu_it_was() -> None:
    models = {"tiny-tfidf": model("tiny-tfidf", 400, 450)}
    slow = pipe("tiny-tfidf", 380, half_p99=900)  # bound 473.7/s: 0.80
    slow.cpu = {
        "saturation": share(196, **{"worker --backend cpu": 120, "broker": 20, "bench": 30}),
        "half_load": share(198, **{"broker": 70, "worker --backend cpu": 80, "bench": 20}),
    }
    goals = {
        g.name: g
        for g in check_goals(
            relay=run(1000), models=models, pipelines={"tiny-tfidf": slow}, max_wait_ms=20
        )
    }
    bound = goals["tiny-tfidf pipeline / bound"]
    assert bound.status == "MISS"
    assert bound.short_by == "0.05 (6% of the target)"
    assert "cores 196% of 200%" in bound.why and "broker 20%" in bound.why
    assert "the 76% that was not the workers'" in bound.why  # 196 - 120
    p99 = goals["tiny-tfidf p99 at 50% load"]  # bound 20 + 3 * 142.2 = 446.7 ms
    assert p99.short_by == "453.3 ms over (2.0x the target)"
    assert "broker took more CPU at half the items/s than flat out (70% against 20%)" in p99.why
    assert "cores were full at half load" in p99.why
    # half load: 198% for 190 items/s = 10.42 ms of a core each; flat out 196% / 380 = 5.16
    assert "each item cost 2.0x the machine's CPU it cost flat out (10.42 against 5.16" in p99.why
    text = render(relay=run(1000), models=models, pipelines={"tiny-tfidf": slow}, goals=[bound])
    assert "what stands in the way" in text and "tiny-tfidf pipeline saturation: cores 196%" in text


def test_a_met_goal_carries_no_excuse_and_idle_cores_say_waiting() -> None:
    models = {"tiny-tfidf": model("tiny-tfidf", 400, 450)}
    fast = pipe("tiny-tfidf", 450, half_p99=100)
    fast.cpu = {"saturation": share(120, router=40), "half_load": share(60, router=20)}
    goals = check_goals(
        relay=run(1000), models=models, pipelines={"tiny-tfidf": fast}, max_wait_ms=20
    )
    met = [g for g in goals if g.status == "PASS"]
    assert met and all(g.short_by == "" and g.why == "" for g in met)
    waiting = pipe("tiny-tfidf", 300, half_p99=100)
    waiting.cpu = {"saturation": share(120, router=40)}
    goals = check_goals(
        relay=run(1000), models=models, pipelines={"tiny-tfidf": waiting}, max_wait_ms=20
    )
    (bound,) = [g for g in goals if g.name == "tiny-tfidf pipeline / bound"]
    assert "80% of the cores stood idle" in bound.why


def test_a_batching_gain_miss_says_whether_batch_one_left_cores_idle() -> None:
    emb = model("medium-embedding", 3.0, 3.2)
    emb.cpu = {"batch1": share(195, bench=190), "batched": share(197, bench=192)}
    goals = check_goals(relay=None, models={"medium-embedding": emb}, pipelines={}, max_wait_ms=20)
    (gain,) = [g for g in goals if g.name == "medium-embedding batching gain (CPU)"]
    assert gain.status == "MISS" and gain.short_by == "1.43 (57% of the target)"
    assert gain.why.startswith("the cores were 195% busy at batch 1 and 197% batched")
    assert "no idle CPU to fill" in gain.why


def test_goals_not_measured_are_na_with_the_reason() -> None:
    broken = ModelBench(model_id="medium-embedding", error="ArtifactMissing: no head.json")
    goals = {
        g.name: g
        for g in check_goals(
            relay=None, models={"medium-embedding": broken}, pipelines={}, max_wait_ms=20
        )
    }
    assert goals["tiny-tfidf pipeline / bound"].status == "N/A"
    assert goals["tiny-tfidf pipeline / FastStream peer"].status == "N/A"
    emb = goals["medium-embedding pipeline / offline batched"]
    assert emb.status == "N/A" and emb.measured == "unavailable (ArtifactMissing)"
    assert goals["medium-embedding batching gain (CPU)"].status == "N/A"


def test_gpu_run_checks_the_gpu_goals() -> None:
    emb = model("medium-embedding", 500, 12_000, batch=256)
    emb.device = "cuda"
    pipes = {"medium-embedding": pipe("medium-embedding", 10_500, 50, backend="gpu")}
    goals = {
        g.name: g
        for g in check_goals(
            relay=None, models={"medium-embedding": emb}, pipelines=pipes, max_wait_ms=20
        )
    }
    assert goals["medium-embedding pipeline / offline batched"].target == ">= 0.80"
    assert goals["medium-embedding pipeline / offline batched"].status == "PASS"  # 0.875
    assert goals["medium-embedding pipeline on GPU"].status == "PASS"
    # the CPU batching-gain goal is not judged on a GPU figure
    assert goals["medium-embedding batching gain (CPU)"].status == "N/A"


def test_the_default_model_is_timed_against_small_perplexity_in_the_same_run() -> None:
    def speed_goal(models: dict[str, ModelBench], default: str = "tiny-tfidf") -> Goal:
        goals = check_goals(
            relay=None, models=models, pipelines={}, max_wait_ms=20, default_model=default
        )
        (goal,) = [g for g in goals if g.name.startswith("default model")]
        return goal

    # each side at its faster point: batch 1 for the SmolLM2 loop here, batched for tf-idf
    base = model("small-perplexity", 1.75, 0.9, batch=16)
    goal = speed_goal({"tiny-tfidf": model("tiny-tfidf", 3000, 6000), "small-perplexity": base})
    assert goal.name == "default model (tiny-tfidf) / small-perplexity, texts/s"
    assert goal.status == "PASS" and goal.measured == "3,428.6x (6,000.0 / 1.75 texts/s)"
    slow = speed_goal(
        {"small-curvature": model("small-curvature", 3.5, 3.0), "small-perplexity": base},
        "small-curvature",
    )
    assert slow.status == "MISS" and slow.short_by == "2.00 (50% of the target)"
    assert slow.why == "small-curvature would need 7.00 texts/s"
    missing = speed_goal({"tiny-tfidf": model("tiny-tfidf", 3000, 6000)})
    assert missing.status == "N/A"
    assert missing.measured == (
        "small-perplexity not measured: bench model --model tiny-tfidf --model small-perplexity"
    )
    # without a default model named, the goal is not judged at all
    assert not [
        g
        for g in check_goals(relay=None, models={}, pipelines={}, max_wait_ms=20)
        if g.name.startswith("default model")
    ]


def test_p99_bound_uses_one_configured_batch() -> None:
    assert p99_bound_ms(20, model("m", 1, 100, batch=50)) == pytest.approx(20 + 3 * 500)
    assert p99_bound_ms(20, None) is None


def test_render_and_json_carry_every_figure() -> None:
    models = {"tiny-tfidf": model("tiny-tfidf", 400, 450)}
    pipes = {"tiny-tfidf": pipe("tiny-tfidf", 500, half_p99=300)}
    relay = run(2000)
    goals = check_goals(relay=relay, models=models, pipelines=pipes, max_wait_ms=20)
    text = render(relay=relay, models=models, pipelines=pipes, goals=goals)
    assert "0.25 x relay" in text and "MISS" in text and "PASS" in text
    doc = as_json(meta={"date": "x"}, relay=relay, models=models, pipelines=pipes, goals=goals)
    doc = json.loads(json.dumps(doc))  # serialisable
    assert doc["pipelines"]["tiny-tfidf"]["ratio"] == 0.25
    assert doc["pipelines"]["tiny-tfidf"]["ratio_to"] == "relay"
    assert doc["models"]["tiny-tfidf"]["batching_gain"] == 1.12
    assert doc["relay"]["items_per_s"] == 2000
    assert {g["status"] for g in doc["goals"]} <= {"PASS", "MISS", "N/A"}


def test_table_aligns_columns() -> None:
    out = table(["a", "rate"], [["x", 1234.5], ["long name", 0.5]]).splitlines()
    assert out[0].startswith("a") and len({len(line) for line in out}) == 1
    assert out[2].endswith("1,234") and out[3].endswith(" 0.50")


def test_builtin_texts_are_realistic_lengths(tmp_path) -> None:  # type: ignore[no-untyped-def]
    texts = sample_texts()
    sizes = sorted(len(t.encode()) for t in texts)
    assert len(set(texts)) >= 100
    assert 1000 <= sizes[len(sizes) // 2] <= 2000  # median 1-2 KB, like the corpus
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "one"}\n\n{"text": "two", "label": 1}\n')
    assert load_texts(data) == ["one", "two"]
