"""`deepfake-stream bench` as a user runs it, on the real broker; the last line is JSON."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.integration.harness import cli_command

pytestmark = pytest.mark.integration


def bench(bootstrap: str, *args: str, timeout: float = 240, **env_vars: str) -> dict:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PYTHONUNBUFFERED": "1",
        **env_vars,
    }
    proc = subprocess.run(
        cli_command("bench", *args, "--json", "--no-progress"),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert "items/s" in proc.stdout or "texts/s" in proc.stdout  # the table comes first
    return json.loads(lines[-1])


def test_bench_relay_json(kafka_bootstrap: str) -> None:
    doc = bench(kafka_bootstrap, "relay", "--n", "200")
    assert doc["broker"] == kafka_bootstrap  # the configured broker answered: used as is
    relay = doc["relay"]
    assert relay["n"] == relay["received"] == 200 and relay["duplicates"] == 0
    assert relay["items_per_s"] > 0
    assert 0 < relay["latency_ms"]["p50"] <= relay["latency_ms"]["p99"]
    assert doc["machine"]["cores"] >= 1 and doc["date"].endswith("Z")


@pytest.mark.slow
def test_bench_pipeline_tiny_tfidf_json(kafka_bootstrap: str) -> None:
    doc = bench(
        kafka_bootstrap,
        "pipeline",
        "--model",
        "tiny-tfidf",
        "--n",
        "200",
        "--model-seconds",
        "0.5",
        "--paced-seconds",
        "2",
    )
    pipe = doc["pipelines"]["tiny-tfidf"]
    sat, half = pipe["saturation"], pipe["half_load"]
    assert sat["received"] == sat["n"] == 200 and sat["duplicates"] == 0
    assert half["received"] == half["n"] >= 50
    assert half["target_rate"] == pytest.approx(sat["items_per_s"] / 2, rel=0.01)
    assert sat["verdict_latency_ms"]["p99"] > 0 and sat["batch_sizes"]["p50"] >= 1
    # the ratio is taken against the relay measured in the same run, on the same broker
    assert pipe["ratio_to"] == "relay" and doc["relay"]["n"] == 200
    assert pipe["ratio"] == pytest.approx(sat["items_per_s"] / doc["relay"]["items_per_s"], 0.01)
    offline = doc["models"]["tiny-tfidf"]
    assert offline["batch1"]["texts_per_s"] > 0 and offline["configured_batch"] == 64
    statuses = {g["goal"]: g["status"] for g in doc["goals"]}
    assert statuses["tiny-tfidf pipeline / bound"] in {"PASS", "MISS"}
    assert statuses["tiny-tfidf pipeline / FastStream peer"] in {"PASS", "MISS"}
    assert pipe["ratio_to_peer"] > 0 and doc["peers"]["tiny-tfidf"]["received"] == 200
    assert statuses["tiny-tfidf p99 at 50% load"] in {"PASS", "MISS"}
    # where the CPU went, by process: the services are this run's children
    cpu = pipe["cpu"]["saturation"]["per_process"]
    assert {"router", "worker --backend cpu", "bench"} <= set(cpu)
    assert cpu["worker --backend cpu"] > 0
    assert pipe["cpu"]["half_load"]["machine_percent"] > 0
    for goal in doc["goals"]:  # a miss says by how much and why; a pass says neither
        assert bool(goal["why"]) == bool(goal["short_by"]) == (goal["status"] == "MISS")
    assert offline["cpu"]["batched"]["per_process"]["bench"] > 0  # offline scores in-process


@pytest.mark.slow
def test_bench_model_times_the_default_against_small_perplexity(kafka_bootstrap: str) -> None:
    # Batch 1 everywhere keeps the SmolLM2 side to a dozen texts; the ratio is what counts.
    doc = bench(
        kafka_bootstrap, "model", "--model-seconds", "0.2", timeout=400, WORKER_MAX_BATCH_SIZE="1"
    )
    models = doc["models"]
    # no --model: the usual two, plus the default and today's SmolLM2 loop, offline only
    assert {"tiny-tfidf", "medium-embedding", "small-perplexity"} <= set(models)
    assert not doc["pipelines"]
    base, fast = (
        max(models[m][p]["texts_per_s"] for p in ("batch1", "batched"))
        for m in ("small-perplexity", "tiny-tfidf")
    )
    (goal,) = [g for g in doc["goals"] if g["goal"].startswith("default model (tiny-tfidf)")]
    assert goal["status"] == "PASS" and goal["target"] == ">= 4x"
    assert fast / base >= 4 and goal["measured"].endswith(f"/ {base:,.2f} texts/s)")
