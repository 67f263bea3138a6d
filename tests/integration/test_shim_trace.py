"""One item's trace across every hop: shim → detect.in → router → worker → verdict."""

from __future__ import annotations

import pytest

from tests.conftest import unique_settings
from tests.integration.test_shim import KEY, shim_over_pipeline
from tests.otel_memory import memory_exporter, spans_of_trace, traceparent_ids

pytestmark = pytest.mark.integration


async def test_via_stream_request_is_one_trace_from_shim_to_verdict(kafka_bootstrap: str) -> None:
    memory_exporter()
    settings = unique_settings(kafka_bootstrap, api__api_keys=KEY)
    async with shim_over_pipeline(settings) as (_, client):
        answer = await client.post("/v1/detect?via=stream", json={"text": "Trace me."})
    assert answer.status_code == 200, answer.text
    verdict = answer.json()
    # The verdict's own trace id is the one the shim's server span started.
    shim_spans = [s for s in memory_exporter().get_finished_spans() if s.name == "shim /v1/detect"]
    assert shim_spans, "the shim records a server span"
    shim = shim_spans[-1]
    spans = spans_of_trace(shim.context.trace_id)
    names = {s.name for s in spans}
    assert any(s.name.startswith("route ") for s in spans), names
    router = next(s for s in spans if s.name.startswith("route "))
    worker = next(s for s in spans if s.name == "score cpu")
    assert router.parent is not None and router.parent.span_id == shim.context.span_id, names
    assert worker.parent is not None and worker.parent.span_id == router.context.span_id
    assert verdict["backend"] == "cpu"
    assert traceparent_ids(f"00-{shim.context.trace_id:032x}-{shim.context.span_id:016x}-01")
