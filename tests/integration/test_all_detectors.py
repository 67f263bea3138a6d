"""Every registered detector produces contract verdicts through the pipeline on CPU."""

from __future__ import annotations

import re

import pytest

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.models.registry import registry_for
from deepfake_stream.routing.service import serve_router
from deepfake_stream.schemas import Verdict
from tests.conftest import unique_settings
from tests.integration.harness import collect, publish, running, wait_live

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = [
    "The committee will reconvene next week to review the proposal in detail.",
    "Der Rhein ist einer der wichtigsten Flüsse Europas und verbindet viele Länder.",
]


async def test_every_registered_model_scores_through_the_stream_on_cpu(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap)
    registry = registry_for(settings)
    models = sorted(registry.models)
    assert {"tiny-tfidf", "small-fusion", "small-perplexity"} <= set(models)
    assert not {"large-ensemble", "medium-embedding"} & set(models)  # models/retired.yaml
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        for model in models:
            await wait_live(settings, "cpu", model, timeout=300)
        docs = [
            {"id": f"{m}-{i}", "text": t, "model_id": m}
            for m in models
            for i, t in enumerate(TEXTS)
        ]
        await publish(settings, docs)
        results = await collect(settings, verdicts=len(docs), timeout=600)
    by_id = results.by_id()
    assert set(by_id) == {d["id"] for d in docs}
    for d in docs:
        v = Verdict.model_validate(by_id[d["id"]])
        assert v.model_id == d["model_id"]
        release = re.escape(registry.resolve(v.model_id).version)
        assert re.match(rf"^{release}\+sha256:[0-9a-f]{{12}}$", v.model_version)
        # No GPU and no Modal here: every model's chain ends on the CPU worker.
        assert v.backend == "cpu" and v.fallback_from == []
