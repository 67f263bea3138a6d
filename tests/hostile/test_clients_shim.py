"""The HTTP shim against hostile clients, in-process (no broker): every case is a clear 4xx
with the codec's reason (never a 500 or a trace), the shim keeps answering (``/healthz``
included) while a heavy request runs, and valid requests keep flowing."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from deepfake_stream.core.settings import load_settings
from deepfake_stream.core.tracing import trace_from_headers
from deepfake_stream.models.registry import load_registry
from deepfake_stream.shim import create_app
from deepfake_stream.shim.sentences import sentence_spans
from tests.doubles import EchoDetector, SlowDetector
from tests.waiting import until

KEY = "hostile-key"
TEXT = "The committee will reconvene next week. It will review the proposal in detail."


@asynccontextmanager
async def shim(
    *, address: str = "127.0.0.1", detector: Any = None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    values = {("api", "api_keys"): KEY, ("http", "rate_limit_rps"): 0}
    values |= {tuple(k.split("__")): v for k, v in overrides.items()}
    registry = load_registry()
    detectors = None
    if detector is not None:
        detectors = {
            registry.default_model: detector(registry.models[registry.default_model].spec())
        }
    app = create_app(load_settings(values), connect_kafka=False, detectors=detectors)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://shim", headers={"X-API-Key": KEY}, timeout=60
        ) as client:
            yield client


def error_of(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code, body
    assert "Traceback" not in r.text and 'File "' not in r.text
    return str(body["detail"])


async def still_serves(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/detect", json={"id": "valid", "text": TEXT})
    assert r.status_code == 200, r.text
    assert r.json()["text_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()


def raw(body: bytes) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": "application/json"}}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"text": "hi there", "tenant": "\\ud800"}', "invalid_json"),
        (b'{"text": "hi there", "metadata": {"k": "\\udfff x"}}', "invalid_json"),
        (b'{"text": "hi there", "metadata": {"\\ud83d": 1}}', "invalid_json"),
        (b'{"text": "hi there", "metadata": {"k": NaN}}', "invalid_json"),
        (b'{"text": "hi there", "metadata": {"k": [Infinity]}}', "invalid_json"),
        (b'{"text": "hi", "metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_schema"),
        (b'{"text": "hi", "metadata": {"k": ' + b"[" * 40 + b"]" * 40 + b"}}", "invalid_schema"),
        (b'{"text": " \\n\\t\\u3000 "}', "invalid_schema"),
        (b'{"items": [{"text": "ok"}, {"text": "\\t"}]}', "invalid_schema"),
    ],
    ids=["surrogate-tenant", "surrogate-metadata", "surrogate-key", "nan", "infinity",
         "past-the-parser", "past-max-json-depth", "blank-text", "blank-text-in-batch"],
)  # fmt: skip
async def test_hostile_bodies_are_422_with_the_codec_reason(body: bytes, code: str) -> None:
    path = "/v1/detect/batch" if body.startswith(b'{"items"') else "/v1/detect"
    async with shim() as client:
        error_of(await client.post(path, **raw(body)), 422, code)
        await still_serves(client)


async def test_detailed_on_a_long_run_of_spaces_is_fast_and_healthz_answers() -> None:
    """ "a" + 99,998 spaces + "b" once froze the whole shim (/healthz too) for 45 s."""
    async with shim() as client:
        text = "a" + " " * 99_998 + "b"
        started = time.monotonic()
        heavy = asyncio.create_task(
            client.post("/v1/detect", json={"text": text, "detailed": True})
        )
        health = await client.get("/healthz")
        assert health.status_code == 200
        r = await heavy
        assert r.status_code == 200, r.text
        assert [(s["start"], s["end"]) for s in r.json()["sentences"]] == [(0, 100_000)]
        assert time.monotonic() - started < 10


async def test_healthz_answers_while_detailed_sentences_are_scored() -> None:
    scoring = threading.Event()

    class Slow(SlowDetector):
        delay_s = 1.0

        def predict_batch(self, texts):  # type: ignore[no-untyped-def]
            scoring.set()
            return super().predict_batch(texts)

    async with shim(detector=Slow) as client:
        text = " ".join(f"Sentence number {i}." for i in range(5))
        heavy = asyncio.create_task(
            client.post("/v1/detect", json={"text": text, "detailed": True})
        )
        await until(scoring.is_set, timeout=30, what="the request to reach the inference thread")
        started = time.monotonic()
        assert (await client.get("/healthz")).status_code == 200
        assert time.monotonic() - started < 0.5  # not behind the ~2 s of inference
        assert not heavy.done()
        r = await heavy
        assert r.status_code == 200 and len(r.json()["sentences"]) == 5


async def test_detailed_over_the_sentence_budget_is_422_before_any_inference() -> None:
    class Counting(EchoDetector):
        texts = 0

        def predict_batch(self, texts):  # type: ignore[no-untyped-def]
            Counting.texts += len(texts)
            return super().predict_batch(texts)

    async with shim(detector=Counting, http__detailed_max_sentences=100) as client:
        many = " ".join(f"S{i}." for i in range(101))
        detail = error_of(
            await client.post("/v1/detect", json={"text": many, "detailed": True}),
            422,
            "too_many_sentences",
        )
        assert "HTTP_DETAILED_MAX_SENTENCES" in detail
        # Summed over a batch: two texts of 60 sentences each are over 100 too.
        sixty = " ".join(f"S{i}." for i in range(60))
        items = [{"text": sixty, "detailed": True}, {"text": sixty, "detailed": True}]
        error_of(
            await client.post("/v1/detect/batch", json={"items": items}), 422, "too_many_sentences"
        )
        assert Counting.texts == 0  # refused before any inference
        r = await client.post("/v1/detect", json={"text": sixty, "detailed": True})
        assert r.status_code == 200 and len(r.json()["sentences"]) == 60
        assert (await client.post("/v1/detect", json={"text": many})).status_code == 200


async def test_failed_api_keys_are_rate_limited_per_address() -> None:
    async with shim(http__auth_fail_burst=5, http__auth_fail_rps=0.5) as client:
        for _ in range(5):
            r = await client.post("/v1/detect", json={"text": TEXT}, headers={"X-API-Key": "guess"})
            error_of(r, 401, "unauthorized")
        r = await client.post("/v1/detect", json={"text": TEXT}, headers={"X-API-Key": "guess"})
        error_of(r, 429, "too_many_failed_keys")
        assert 1 <= int(r.headers["retry-after"]) <= 2
        # The right key from that address is not even checked now: a guesser learns nothing.
        error_of(await client.post("/v1/detect", json={"text": TEXT}), 429, "too_many_failed_keys")
        assert (await client.get("/healthz")).status_code == 200
    async with shim(http__auth_fail_burst=5, http__auth_fail_rps=0.5) as client:
        await still_serves(client)  # another address (another app) is not affected


async def test_crlf_in_request_id_is_replaced_not_echoed() -> None:
    async with shim() as client:
        r = await client.post(
            "/v1/detect",
            json={"text": TEXT},
            headers=[(b"X-Request-ID", b"abc\r\nX-Injected: 1"), (b"X-API-Key", KEY.encode())],
        )
        assert r.status_code == 200
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
        assert "x-injected" not in r.headers


@pytest.mark.parametrize(
    "traceparent",
    [b"garbage", b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01x", b"\xff\xfe", b"00-" + b"z" * 51],
)
async def test_malformed_traceparent_gets_a_verdict_and_a_fresh_trace(traceparent: bytes) -> None:
    async with shim() as client:
        r = await client.post(
            "/v1/detect",
            json={"text": TEXT},
            headers=[(b"traceparent", traceparent), (b"X-API-Key", KEY.encode())],
        )
        assert r.status_code == 200, r.text
    carried = trace_from_headers([("traceparent", traceparent)])
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", carried["traceparent"])


def _quadratic_reference(text: str) -> list[tuple[int, int]]:
    """The splitter as it was (a regex with ``\\s*\\n\\s*``: quadratic on runs of spaces)."""
    end, close = r"[.!?\u2026\u3002\uff01\uff1f]", r"[\"'\u201d\u2019)\]]"
    boundary = re.compile(
        rf"(?:(?<={end})|(?<={end}{close}))\s+|\s*\n\s*|(?<=[\u3002\uff01\uff1f])\s*"
    )
    spans, start = [], 0
    for piece_end, next_start in [(m.start(), m.end()) for m in boundary.finditer(text)] + [
        (len(text), len(text))
    ]:
        a, b = start, piece_end
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            spans.append((a, b))
        start = next_start
    return spans


def test_linear_splitter_gives_the_same_spans_and_stops_at_its_limit() -> None:
    import random

    rng = random.Random(7)
    alphabet = "ab .!?\u2026\u3002\uff01\uff1f\"')]\n\t \u3000\u201d"
    for _ in range(5_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        full = _quadratic_reference(text)
        assert sentence_spans(text) == full, repr(text)
        limit = rng.randint(0, 5)
        cut = sentence_spans(text, limit)
        assert cut == full[: len(cut)] and (len(cut) > limit or cut == full), repr(text)
    started = time.perf_counter()
    assert sentence_spans("a" + " " * 999_998 + "b") == [(0, 1_000_000)]
    assert time.perf_counter() - started < 1.0  # linear: ~1 ms (the regex: minutes)
