"""One stream of hostile records through router and CPU worker (real broker, real tiny-tfidf):
each gets exactly one verdict or one dead letter with the right reason, the valid items
behind them flow, no service dies, and neither metric labels nor memory grow with
attacker-chosen values (10,000 distinct model ids and tenants)."""

from __future__ import annotations

import json
import resource
from collections import Counter

import pytest
from prometheus_client import REGISTRY

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.producers.replay import ReplayOptions, replay
from deepfake_stream.producers.scan import Selection
from deepfake_stream.routing.service import serve_router
from tests.conftest import unique_settings
from tests.hostile.core_raw import RawHeaderKey, Record, item, produce_raw
from tests.integration.harness import collect, running, wait_live

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # 20-45 s

N_DISTINCT = 5_000  # unknown model ids, and as many tenants: 10,000 attacker-chosen values


def _hostile() -> tuple[list[Record], dict[str, str]]:
    """The records, and for each id the outcome it must get: "verdict" or a dlq.reason."""
    records: list[Record] = []
    expect: dict[str, str] = {}

    def add(rec: Record, outcome: str) -> None:
        records.append(rec)
        expect[json.loads(rec[1])["id"]] = outcome

    k, v, _ = item("header-values")
    add((k, v, [("x-bin", b"\xff\xfe\x00"), ("traceparent", b"\xc3\x28"), ("e", b"")]), "verdict")
    _, v, _ = item("megabyte-key")
    add((b"K" * 1_048_576, v, []), "verdict")
    k, v, _ = item("thousand-headers")
    add((k, v, [(f"h{i}", b"v" * 10) for i in range(1_000)]), "verdict")
    k, v, _ = item("bad-traceparent")
    add((k, v, [("traceparent", b"00-zz-yy-01"), ("tracestate", b"=" * 10_000)]), "verdict")
    k, v, _ = item("huge-traceparent")
    add((k, v, [("traceparent", b"00-" + b"f" * 100_000 + b"-01")]), "verdict")
    k, v, _ = item("raw-header-key")
    add((k, v, [(RawHeaderKey(b"\x80\x81"), b"x")]), "verdict")
    add(item("nul-text", "before\x00after, a NUL inside an ordinary sentence."), "verdict")
    for n, model_id in enumerate(["../../etc/passwd", "..\\..\\boot.ini", "/abs", "a/../b"]):
        add(item(f"traversal-{n}", model_id=model_id), "unknown_model")
    for i in range(N_DISTINCT):
        add(item(f"model-{i}", model_id=f"attacker-model-{i}"), "unknown_model")
        add(item(f"tenant-{i}", tenant=f"attacker-tenant-{i}"), "verdict")
    add(item("last"), "verdict")
    return records, expect


def _samples() -> int:
    return sum(len(m.samples) for m in REGISTRY.collect())


async def test_hostile_records_each_get_one_outcome_and_nothing_grows(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap, worker__max_batch_size=256)
    records, expect = _hostile()
    verdicts = sum(1 for o in expect.values() if o == "verdict")
    dead = len(expect) - verdicts
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        await wait_live(settings, "cpu", "tiny-tfidf")
        # Warm-up: every label the healthy path uses exists before the baseline.
        await produce_raw(settings, [item("warm-up"), item("warm-up-dead", model_id="nope")])
        await collect(settings, verdicts=1, dead=1, timeout=60)
        samples, rss_kb = _samples(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await produce_raw(settings, records)
        results = await collect(settings, verdicts=verdicts + 1, dead=dead + 1, timeout=120)
        grown_samples = _samples() - samples
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_kb) / 1024
    got: Counter[tuple[str, str]] = Counter()
    for a in results.verdicts:
        got[(a.json()["id"], "verdict")] += 1
    for a in results.dead:
        got[(json.loads(a.value)["id"], a.headers["dlq.reason"])] += 1
    got -= Counter({("warm-up", "verdict"): 1, ("warm-up-dead", "unknown_model"): 1})
    assert got == Counter({(i, outcome): 1 for i, outcome in expect.items()})
    assert grown_samples < 50, f"{grown_samples} new metric samples for attacker-chosen values"
    assert grown_mb < 300, f"peak memory grew {grown_mb:.0f} MB"

    # replay --all reads the same records (the header key that is not UTF-8 included).
    summary = await replay(settings, Selection(), ReplayOptions(progress=False))
    assert summary.read == len(records) + 2
