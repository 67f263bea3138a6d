"""The HTTP shim without a broker: every status code, error bodies, sentence detail, models.

The app runs in-process (FastAPI's TestClient) with the real tiny-tfidf detector; Kafka is
not connected (``connect_kafka=False``), so scoring is in-process only.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deepfake_stream.core.settings import load_settings
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.operating_points import decide
from deepfake_stream.models.registry import load_registry
from deepfake_stream.schemas import Verdict
from deepfake_stream.shim import create_app
from deepfake_stream.shim.auth import RateLimiter, key_matches, parse_keys
from deepfake_stream.shim.sentences import sentence_spans
from deepfake_stream.text import word_count
from tests.doubles import FailingDetector
from tests.integration.harness import cli_command

KEY = "k-test-1"
VERSION = re.compile(r"^2026\.11\.1\+sha256:[0-9a-f]{12}$")
TEXT = (
    "The committee will reconvene next week to review the proposal in detail. "
    "honestly no idea why the printer keeps jamming, tried everything lol! "
    "Climate change poses significant challenges to global food security."
)


def make_client(**overrides: Any) -> TestClient:
    values = {("api", "api_keys"): KEY, ("http", "rate_limit_rps"): 0, ("http", "auth_fail_rps"): 0}
    for key, value in overrides.items():
        group, field = key.split("__")
        values[(group, field)] = value
    detectors = values.pop(("test", "detectors"), None)
    app = create_app(load_settings(values), connect_kafka=False, detectors=detectors)
    return TestClient(app, raise_server_exceptions=False, headers={"X-API-Key": KEY})


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with make_client() as c:
        yield c


@pytest.fixture(scope="module")
def tfidf():  # type: ignore[no-untyped-def]
    import asyncio

    detector = build_detector(load_registry().models["tiny-tfidf"].spec())
    asyncio.run(detector.load())
    return detector


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


def test_detect_answers_a_contract_verdict(client: TestClient, tfidf) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/detect",
        json={"text": TEXT, "id": "post-1", "tenant": "forum", "metadata": {"k": [1, 2]}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "sentences" not in body
    v = Verdict.model_validate(body)
    assert v.id == "post-1" and v.tenant == "forum" and v.metadata == {"k": [1, 2]}
    assert v.model_id == "tiny-tfidf" and VERSION.match(v.model_version)
    assert v.model_version == tfidf.version
    assert abs(v.score - tfidf.predict_batch([TEXT])[0].score) < 1e-9
    assert v.backend == "cpu" and v.fallback_from == [] and v.attempts == 1
    assert v.batch_size == 1 and v.replay is False and v.scored_at.endswith("Z")


def test_detect_without_id_gets_a_fresh_one(client: TestClient) -> None:
    a = client.post("/v1/detect", json={"text": TEXT}).json()["id"]
    b = client.post("/v1/detect", json={"text": TEXT}).json()["id"]
    assert a != b and a.startswith("shim-")


def test_batch_scores_in_order_and_equals_single(client: TestClient) -> None:
    texts = [f"{TEXT} ({i})" for i in range(5)] + ["short one"]
    r = client.post("/v1/detect/batch", json={"items": [{"text": t} for t in texts]})
    assert r.status_code == 200, r.text
    verdicts = r.json()["verdicts"]
    assert len(verdicts) == len(texts)
    assert {v["batch_size"] for v in verdicts} == {len(texts)}
    for text, v in zip(texts, verdicts, strict=True):
        single = client.post("/v1/detect", json={"text": text}).json()
        assert abs(single["score"] - v["score"]) < 1e-9 and single["label"] == v["label"]


def test_batch_over_the_limit_is_422() -> None:
    with make_client(http__batch_max_texts=3) as c:
        r = c.post("/v1/detect/batch", json={"items": [{"text": "x y"}] * 4})
        body = assert_error(r, 422, "too_many_items")
        assert "HTTP_BATCH_MAX_TEXTS" in body["detail"]
        assert c.post("/v1/detect/batch", json={"items": [{"text": "x y"}] * 3}).status_code == 200


def test_detailed_gives_sentence_spans_each_scored_alone(client: TestClient, tfidf) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/detect", json={"text": TEXT, "detailed": True})
    assert r.status_code == 200, r.text
    sentences = r.json()["sentences"]
    assert [s["text"] for s in sentences] == [
        "The committee will reconvene next week to review the proposal in detail.",
        "honestly no idea why the printer keeps jamming, tried everything lol!",
        "Climate change poses significant challenges to global food security.",
    ]
    config = client.app.state.shim.registry.resolve(r.json()["model_id"])  # type: ignore[attr-defined]
    for s in sentences:
        assert TEXT[s["start"] : s["end"]] == s["text"]
        assert abs(s["score"] - tfidf.predict_batch([s["text"]])[0].score) < 1e-9
        # Judged as a verdict on a text of its length: a sentence is under min_words.
        threshold = decide(s["score"], config, None, word_count(s["text"])).threshold
        assert s["label"] == ("ai" if s["score"] >= threshold else "human")
        assert word_count(s["text"]) < config.min_words


def test_sentence_spans() -> None:
    text = 'One here.  He said "two." Three!\n\nFour?  終わり。次です\uff01 last'
    pieces = [text[a:b] for a, b in sentence_spans(text)]
    assert pieces == [
        "One here.",
        'He said "two."',
        "Three!",
        "Four?",
        "終わり。",
        "次です\uff01",
        "last",
    ]
    assert sentence_spans("   \n ") == []
    assert sentence_spans("no end") == [(0, 6)]
    other = "e.g. 3.5 ok"  # a naive splitter, like any: abbreviations end a sentence
    assert [other[a:b] for a, b in sentence_spans(other)] == ["e.g.", "3.5 ok"]


# --- 401 ---------------------------------------------------------------------------------


def test_missing_or_wrong_key_is_401_but_health_and_metrics_are_open() -> None:
    with make_client() as c:
        for headers in ({"X-API-Key": ""}, {"X-API-Key": "nope"}, {"X-API-Key": KEY + "x"}):
            c.headers.clear()
            c.headers.update(headers)
            assert_error(c.post("/v1/detect", json={"text": TEXT}), 401, "unauthorized")
            assert_error(c.get("/v1/models"), 401, "unauthorized")
            assert_error(c.get("/v1/models/tiny-tfidf"), 401, "unauthorized")
            assert_error(c.post("/v1/detect/batch", json={"items": []}), 401, "unauthorized")
        assert c.get("/healthz").status_code == 200
        assert c.get("/metrics").status_code == 200
        assert c.get("/readyz").status_code in (200, 503)  # open; 503 as no broker here


def test_any_configured_key_is_accepted() -> None:
    with make_client(api__api_keys=f"first, {KEY} ,third") as c:
        for key in ("first", KEY, "third"):
            c.headers["X-API-Key"] = key
            assert c.post("/v1/detect", json={"text": TEXT}).status_code == 200
        c.headers["X-API-Key"] = "second"
        assert c.post("/v1/detect", json={"text": TEXT}).status_code == 401


def test_key_matching_and_parsing() -> None:
    settings = load_settings({("api", "api_keys"): "a,b, c ,,"})
    keys = parse_keys(settings)
    assert len(keys) == 3
    assert all(key_matches(k, keys) for k in "abc")
    assert not key_matches("d", keys) and not key_matches("", keys)
    assert parse_keys(load_settings({("api", "api_keys"): None})) == ()


# --- 429 ---------------------------------------------------------------------------------


def test_rate_limit_per_key_answers_429_with_retry_after() -> None:
    with make_client(
        api__api_keys=f"{KEY},other", http__rate_limit_rps=0.5, http__rate_limit_burst=2
    ) as c:
        assert c.get("/v1/models").status_code == 200
        assert c.get("/v1/models").status_code == 200
        r = c.get("/v1/models")
        body = assert_error(r, 429, "rate_limited")
        assert r.headers["retry-after"] == "2"  # one token at 0.5/s
        assert "0.5 requests/s" in body["detail"]
        # Another key has its own bucket; health and metrics are never limited.
        assert c.get("/v1/models", headers={"X-API-Key": "other"}).status_code == 200
        assert all(c.get("/healthz").status_code == 200 for _ in range(5))


def test_rate_limiter_refills_over_time() -> None:
    now = [100.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("b") == 0.0
    assert RateLimiter(0, 1).acquire("x") == 0.0  # 0 turns it off


# --- 413 ---------------------------------------------------------------------------------


def test_declared_body_over_the_limit_is_413() -> None:
    with make_client(http__max_body_bytes=2048) as c:
        r = c.post("/v1/detect", json={"text": "word " * 1000})
        body = assert_error(r, 413, "too_large")
        assert "HTTP_MAX_BODY_BYTES" in body["detail"]
        assert c.post("/v1/detect", json={"text": "word " * 100}).status_code == 200


def test_streamed_body_over_the_limit_is_413() -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    with make_client(http__max_body_bytes=4096) as c:
        r = c.post("/v1/detect", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "too_large")


async def test_body_limit_stops_reading_once_over() -> None:
    """At ASGI level: after the limit the app gets a disconnect and no more chunks are read."""
    from deepfake_stream.shim.limits import BodyLimitMiddleware

    read = 0
    sent: list[dict[str, Any]] = []
    app_saw: list[str] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": read < 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        while True:
            message = await receive()
            app_saw.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    limited = BodyLimitMiddleware(app, max_bytes=4_500)
    await limited({"type": "http", "headers": [], "method": "POST"}, receive, send)
    assert read == 5  # 5,000 bytes: over the limit, nothing more is read
    assert app_saw[-1] == "http.disconnect"
    assert sent[0]["status"] == 413 and len(sent) == 2  # the app's late answer is dropped


def test_text_over_max_text_chars_is_413() -> None:
    with make_client(limits__max_text_chars=50) as c:
        body = assert_error(c.post("/v1/detect", json={"text": "y" * 51}), 413, "too_large")
        assert "limit is 50" in body["detail"]
        assert c.post("/v1/detect", json={"text": "y" * 50}).status_code == 200


# --- 422 / 404 / 500 ---------------------------------------------------------------------


@pytest.mark.parametrize("content", [b'{"text": ', b"not json at all"])
def test_malformed_json_is_422_invalid_json_as_on_the_stream(
    client: TestClient, content: bytes
) -> None:
    r = client.post("/v1/detect", content=content, headers={"content-type": "application/json"})
    assert "not JSON" in assert_error(r, 422, "invalid_json")["detail"]


@pytest.mark.parametrize(
    "content",
    [
        b"[1, 2]",
        b'{"text": ""}',
        b'{"id": "x"}',
        b'{"text": "ok", "prefer_backend": "tpu"}',
        b'{"text": "ok", "unknown": 1}',
    ],
)
def test_malformed_or_invalid_bodies_are_422(client: TestClient, content: bytes) -> None:
    r = client.post("/v1/detect", content=content, headers={"content-type": "application/json"})
    body = assert_error(r, 422, "invalid_request")
    assert body["detail"] and all(set(p) == {"loc", "msg", "type"} for p in body["detail"])


def test_deeply_nested_metadata_is_422_as_on_the_stream(client: TestClient) -> None:
    nested: Any = 1
    for _ in range(40):
        nested = [nested]
    r = client.post("/v1/detect", json={"text": TEXT, "metadata": {"deep": nested}})
    assert_error(r, 422, "invalid_schema")


def test_unknown_model_is_404(client: TestClient) -> None:
    body = assert_error(
        client.post("/v1/detect", json={"text": TEXT, "model_id": "nope"}), 404, "unknown_model"
    )
    assert "tiny-tfidf" in body["detail"]  # says what is registered
    assert_error(client.get("/v1/models/nope"), 404, "unknown_model")
    assert_error(client.get("/no/such/route"), 404, "not_found")


def test_a_retired_model_is_404_with_where_to_find_it(client: TestClient) -> None:
    for r in (
        client.post("/v1/detect", json={"text": TEXT, "model_id": "medium-embedding"}),
        client.get("/v1/models/medium-embedding"),
    ):
        assert (
            "it was retired: models/retired.yaml" in assert_error(r, 404, "unknown_model")["detail"]
        )


def test_unexpected_errors_are_500_without_a_stack_trace(client: TestClient) -> None:
    state = client.app.state.shim  # type: ignore[attr-defined]
    original = state.scorer.plan

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals /etc/passwd")

    state.scorer.plan = broken
    try:
        r = client.post("/v1/detect", json={"text": TEXT}, headers={"X-Request-ID": "req-42"})
    finally:
        state.scorer.plan = original
    assert r.status_code == 500
    assert r.json() == {
        "error": "internal_error",
        "detail": "internal error; quote the request id when reporting it",
        "request_id": "req-42",
    }
    assert "secret" not in r.text and "Traceback" not in r.text


def test_detector_failure_is_502_model_error() -> None:
    spec = load_registry().models["tiny-tfidf"].spec()
    with make_client(test__detectors={"tiny-tfidf": FailingDetector(spec)}) as c:
        body = assert_error(c.post("/v1/detect", json={"text": TEXT}), 502, "model_error")
        assert "ModelError" in body["detail"]


# --- models, docs, metrics ---------------------------------------------------------------


def test_models_lists_the_registry(client: TestClient) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200
    doc = r.json()
    ids = [m["id"] for m in doc["models"]]
    assert set(load_registry().models) == set(ids) and doc["default"] == "tiny-tfidf"
    tiny = client.get("/v1/models/tiny-tfidf").json()
    assert tiny["loaded_in_shim"] is True and VERSION.match(tiny["version"])
    assert tiny["backends"] == ["cpu"] and tiny["default"] is True
    assert tiny["live_backends"] == []  # no broker: no worker is known to be live


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/detect",
        "/v1/detect/batch",
        "/v1/models",
        "/v1/models/{model_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths


def test_metrics_count_requests_by_route(client: TestClient) -> None:
    client.post("/v1/detect", json={"text": TEXT})
    text = client.get("/metrics").text
    assert 'deepfake_shim_requests_total{method="POST",route="/v1/detect",status="200"}' in text
    assert "deepfake_shim_inference_seconds_bucket" in text
    assert 'deepfake_shim_verdicts_total{label="' in text


def test_shim_refuses_a_public_address_without_keys() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DETECT_API_KEYS"}
    started = time.monotonic()
    out = subprocess.run(
        [*cli_command("shim"), "--http-host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "DETECT_API_KEYS" in out.stderr and "0.0.0.0" in out.stderr
    assert time.monotonic() - started < 15


def test_in_process_inference_is_a_span_in_the_request_trace(client: TestClient) -> None:
    """A worker's batch is an ``infer`` span; the shim's in-process batch is one too, a child
    of the request's span, so a slow answer shows where its time went."""
    from tests.otel_memory import memory_exporter, spans_of_trace

    memory_exporter()
    trace_id = "5e" * 16
    headers = {"traceparent": f"00-{trace_id}-{'7a' * 8}-01"}
    body = {"items": [{"text": t} for t in ("one text here", "and a second", "a third one")]}
    body["items"][0]["detailed"] = True
    r = client.post("/v1/detect/batch", json=body, headers=headers)
    assert r.status_code == 200, r.text
    spans = spans_of_trace(int(trace_id, 16))
    (shim,) = [s for s in spans if s.name == "shim /v1/detect/batch"]
    infer = [s for s in spans if s.name == "infer tiny-tfidf"]
    assert [s.attributes["deepfake.batch_size"] for s in infer] == [3, 1]  # items, sentences
    for span in infer:
        assert span.parent is not None and span.parent.span_id == shim.context.span_id
        assert span.attributes["deepfake.stage"] == "shim"
        assert VERSION.match(str(span.attributes["deepfake.model_version"]))
        assert span.start_time >= shim.start_time and span.end_time <= shim.end_time
