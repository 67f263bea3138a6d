"""The HTTP shim against the real broker and the real tiny-tfidf detector.

- its in-process verdict equals the stream's verdict for the same text and model;
- ``?via=stream`` answers with the pipeline's own verdict (the one on detect.verdicts);
- ``deepfake-stream shim`` serves over TCP as a subprocess (the README's curl example runs
  in test_readme_examples.py).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.core.settings import Settings
from deepfake_stream.embedded_broker import free_port
from deepfake_stream.routing.service import serve_router
from deepfake_stream.shim import create_app
from tests.conftest import unique_settings
from tests.integration.harness import (
    cli_command,
    collect,
    publish,
    running,
    settings_env,
    wait_live,
)

pytestmark = pytest.mark.integration

KEY = "integration-key"
TEXTS = [
    "The committee will reconvene next week to review the proposal in detail.",
    "honestly no idea why the printer keeps jamming, tried everything lol",
    "Climate change poses significant challenges to global food security and biodiversity.",
    "Der Zug hatte wieder Verspätung, also bin ich zu Fuß gegangen.",
]
COMPARED = ("model_id", "model_version", "label", "is_fake", "threshold", "operating_point",
            "confidence", "backend",
            "fallback_from", "attempts", "replay", "tenant", "metadata")  # fmt: skip


@asynccontextmanager
async def shim_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://shim", headers={"X-API-Key": KEY}, timeout=30
        ) as client:
            yield app, client


@asynccontextmanager
async def shim_over_pipeline(
    settings: Settings,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A router and a CPU worker in this process, and a shim client once it sees them live."""
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        await wait_live(settings, "cpu", "tiny-tfidf")
        async with shim_client(settings) as (app, client):
            await wait_ready(client)
            yield app, client


async def wait_ready(client: httpx.AsyncClient, backend: str = "cpu", timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get("/readyz")
        body = r.json()
        if r.status_code == 200 and body["stream_connected"] and backend in body["live_backends"]:
            return body
        assert time.monotonic() < deadline, f"shim never ready: {body}"
        await asyncio.sleep(0.2)


async def test_shim_verdict_equals_the_stream_verdict(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap, api__api_keys=KEY)
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        await wait_live(settings, "cpu", "tiny-tfidf")
        docs = [
            {"id": f"s-{i}", "text": t, "tenant": "t1", "metadata": {"n": i}}
            for i, t in enumerate(TEXTS)
        ]
        await publish(settings, docs)
        stream = (await collect(settings, verdicts=len(docs), timeout=60)).by_id()

        async with shim_client(settings) as (_, client):
            ready = await wait_ready(client)
            assert ready["broker"] and "tiny-tfidf" in ready["models_loaded"]
            assert "tiny-tfidf" in ready["live_backends"]["cpu"]
            for doc in docs:
                r = await client.post(
                    "/v1/detect", json={**doc, "model_id": "tiny-tfidf"}
                )  # in-process (the default)
                assert r.status_code == 200, r.text
                shim, want = r.json(), stream[doc["id"]]
                assert abs(shim["score"] - want["score"]) < 1e-9
                assert {k: shim[k] for k in COMPARED} == {k: want[k] for k in COMPARED}
            batch = await client.post("/v1/detect/batch", json={"items": docs})
            for doc, got in zip(docs, batch.json()["verdicts"], strict=True):
                assert abs(got["score"] - stream[doc["id"]]["score"]) < 1e-9

            # ?via=stream: the answer is the very verdict the pipeline put on detect.verdicts.
            r = await client.post(
                "/v1/detect?via=stream",
                json={"text": TEXTS[2], "tenant": "t1", "metadata": {"via": "stream"}},
            )
            assert r.status_code == 200, r.text
            via = r.json()
            assert via["id"].startswith("shim-")
            assert abs(via["score"] - stream["s-2"]["score"]) < 1e-9
            assert via["model_version"] == stream["s-2"]["model_version"]
            published = (await collect(settings, verdicts=len(docs) + 1, timeout=30)).by_id()
            assert published[via["id"]] == via
            models = (await client.get("/v1/models/tiny-tfidf")).json()
            assert models["live_backends"] == ["cpu"]


async def test_idle_reply_reader_fetches_nothing_and_answers_the_next_requests(
    kafka_bootstrap: str,
) -> None:
    """With no request waiting, the reply reader's partitions are paused (no fetches); the
    pipeline's other verdicts meanwhile are skipped, and concurrent requests after the pause
    each get their own verdict; then the reader pauses again."""
    settings = unique_settings(kafka_bootstrap, api__api_keys=KEY)

    def paused(app: FastAPI) -> bool:
        link = app.state.shim.stream
        return bool(link._tps) and link._consumer.paused() == set(link._tps)

    async with shim_over_pipeline(settings) as (app, client):
        assert paused(app)
        others = [{"id": f"other-{i}", "text": TEXTS[i % 3]} for i in range(20)]
        await publish(settings, others)
        await collect(settings, verdicts=len(others), timeout=60)
        answers = await asyncio.gather(
            *(
                client.post("/v1/detect?via=stream", json={"id": f"q-{i}", "text": TEXTS[i]})
                for i in range(3)
            )
        )
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert [a.json()["id"] for a in answers] == ["q-0", "q-1", "q-2"]
        deadline = time.monotonic() + 10
        while not paused(app):
            assert time.monotonic() < deadline, "the reader did not pause again"
            await asyncio.sleep(0.05)


async def test_via_stream_times_out_with_504_when_no_worker_runs(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap, api__api_keys=KEY, http__stream_timeout_s=1.5)
    async with shim_client(settings) as (app, client):
        deadline = time.monotonic() + 30
        while not app.state.shim.stream.ready:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        started = time.monotonic()
        r = await client.post("/v1/detect?via=stream", json={"text": TEXTS[0]})
        assert r.status_code == 504, r.text
        assert r.json()["error"] == "stream_timeout"
        assert 1.4 < time.monotonic() - started < 10
        # The in-process path does not need a live worker.
        assert (await client.post("/v1/detect", json={"text": TEXTS[0]})).status_code == 200


def _start_shim(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = settings_env(settings)
    env["HTTP_PORT"] = str(port)
    return subprocess.Popen(
        cli_command("shim"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _wait_http(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the shim did not answer /healthz")


def test_shim_serves_over_tcp_and_the_readme_example_works(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap, api__api_keys=f"{KEY},change-me")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start_shim(settings, port)
    try:
        _wait_http(base, proc)
        assert httpx.post(f"{base}/v1/detect", json={"text": TEXTS[0]}).status_code == 401
        r = httpx.post(
            f"{base}/v1/detect", json={"text": TEXTS[0]}, headers={"X-API-Key": KEY}, timeout=30
        )
        assert r.status_code == 200 and r.json()["model_id"] == "tiny-tfidf", r.text
        big = httpx.post(f"{base}/v1/detect", content=b"x" * 2_000_000, headers={"X-API-Key": KEY})
        assert big.status_code == 413
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.status_code == 200 and "deepfake_shim_requests_total" in metrics.text
        assert metrics.headers["content-type"].startswith("text/plain")
        # The README's curl example runs, as printed, in tests/integration/test_readme_examples.py.
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
