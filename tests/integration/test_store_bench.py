"""`deepfake-stream bench pipeline` measures the verdict store beside the pipeline."""

from __future__ import annotations

import pytest

from tests.integration.test_bench import bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_pipeline_reports_the_store_figure(kafka_bootstrap: str) -> None:
    doc = bench(
        kafka_bootstrap,
        "pipeline",
        "--model",
        "tiny-tfidf",
        "--n",
        "300",
        "--model-seconds",
        "0.5",
        "--paced-seconds",
        "1",
        timeout=400,
    )
    store = doc["pipelines"]["tiny-tfidf"]["store"]
    assert store["database"] == "sqlite"  # no DATABASE_URL: a throw-away file, not the user's
    assert store["n"] == store["rows"] == 300
    assert store["rows_per_s"] > 0 and store["capacity_rows_per_s"] > 0
    assert store["lag_s"] >= 0 and isinstance(store["keeps_up"], bool)
