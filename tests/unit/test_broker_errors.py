"""A missing or wrong broker: every command that needs one says so in one line (what was
tried, what to do) and exits 2, with no traceback, quickly. No broker runs here: one case has
nothing listening, the others a plain TCP server that is not Kafka."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepfake_stream.embedded_broker import free_port
from deepfake_stream.supervisor import console_command


def _serve(listener: socket.socket, reply: bytes) -> None:
    held = []
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        held.append(conn)  # keep it open: a silent peer must not look like a closed one
        if reply:
            with contextlib.suppress(OSError):
                conn.sendall(reply)


GARBAGE = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4


def _listening(reply: bytes) -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    threading.Thread(target=_serve, args=(listener, reply), daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.fixture(params=["silent", "garbage"])
def not_kafka(request: pytest.FixtureRequest) -> Iterator[str]:
    """An address where a plain TCP server listens: silent, or answering HTTP."""
    yield from _listening(b"" if request.param == "silent" else GARBAGE)


@pytest.fixture(params=["nothing", "silent", "garbage"])
def wrong_broker(request: pytest.FixtureRequest) -> Iterator[str]:
    """An address where no Kafka broker answers."""
    if request.param == "nothing":
        yield f"127.0.0.1:{free_port()}"
    else:
        yield from _listening(b"" if request.param == "silent" else GARBAGE)


def _run(bootstrap: str, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_PROBE_TIMEOUT_S="1")
    started = time.monotonic()
    proc = subprocess.run(
        [*console_command(), *args], env=env, capture_output=True, text=True, timeout=60
    )
    return proc, time.monotonic() - started


def _assert_one_clean_line(proc: subprocess.CompletedProcess[str], bootstrap: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert bootstrap in lines[0]
    assert "Traceback" not in proc.stderr and "Unclosed" not in proc.stderr


@pytest.mark.parametrize(
    "args",
    [["produce", "ITEMS"], ["tail"], ["tail", "--dlq"], ["replay", "--all"], ["topics"]],
    ids=lambda a: " ".join(a),
)
def test_a_command_without_a_broker_says_what_to_do_in_one_line(
    wrong_broker: str, args: list[str], tmp_path: Path
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "a", "text": "hello"}\n')
    proc, took = _run(wrong_broker, *[str(items) if a == "ITEMS" else a for a in args])
    _assert_one_clean_line(proc, wrong_broker)
    assert "KAFKA_BOOTSTRAP_SERVERS" in proc.stderr and "make run" in proc.stderr
    assert took < 20


def test_up_refuses_a_port_where_something_else_listens_quickly(not_kafka: str) -> None:
    proc, took = _run(not_kafka, "up", "--timeout", "1")
    _assert_one_clean_line(proc, not_kafka)
    assert "does not answer as a Kafka broker" in proc.stderr
    assert took < 20


@pytest.mark.parametrize("what", ["relay", "pipeline"])
def test_bench_refuses_a_port_where_something_else_listens_quickly(
    not_kafka: str, what: str
) -> None:
    """bench asks the same Kafka handshake as the other commands: a TCP connect alone would
    take an HTTP server for a broker and benchmark against it (40 s, then a traceback)."""
    proc, took = _run(not_kafka, "bench", what, "--n", "10", "--model", "tiny-tfidf")
    _assert_one_clean_line(proc, not_kafka)
    assert "does not answer as a Kafka broker" in proc.stderr
    assert "KAFKA_BOOTSTRAP_SERVERS" in proc.stderr
    assert took < 20


def test_topics_print_kafka_cli_needs_no_broker() -> None:
    proc, _ = _run(f"127.0.0.1:{free_port()}", "topics", "--print-kafka-cli")
    assert proc.returncode == 0, proc.stderr
    assert "kafka-topics" in proc.stdout


async def test_shim_via_stream_without_a_broker_says_what_to_do(wrong_broker: str) -> None:
    """The 503 of ``?via=stream`` with no broker names what was tried and what to do (the
    same hint as the CLI's), and says the in-process path still answers; it does."""
    import asyncio

    import httpx

    from deepfake_stream.core.settings import load_settings
    from deepfake_stream.shim import create_app

    settings = load_settings(
        {
            ("kafka", "bootstrap_servers"): wrong_broker,
            ("kafka", "probe_timeout_s"): "0.5",
            ("api", "api_keys"): "k1",
        }
    )
    app = create_app(settings, connect_store=False)
    state = app.state.shim
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://shim",
            headers={"X-API-Key": "k1"},
            timeout=30,
        ) as client,
    ):
        async with asyncio.timeout(20):  # the shim's first probe has answered
            while wrong_broker not in state.broker_problem:
                await asyncio.sleep(0.05)
        r = await client.post("/v1/detect?via=stream", json={"text": "hello there"})
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["error"] == "stream_unavailable"
        detail = body["detail"]
        assert wrong_broker in detail and "Traceback" not in r.text
        assert "KAFKA_BOOTSTRAP_SERVERS" in detail and "make run" in detail
        assert "leave out ?via=stream" in detail
        if "nothing listens" not in detail:
            assert "does not answer as a Kafka broker" in detail
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["broker"] is False
        r = await client.post("/v1/detect", json={"text": "hello there"})
        assert r.status_code == 200, r.text


def test_produce_names_a_missing_file_before_looking_for_a_broker(tmp_path: Path) -> None:
    """With no broker either, the user first hears about the file they mistyped."""
    proc, _ = _run(f"127.0.0.1:{free_port()}", "produce", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "missing.jsonl does not exist" in lines[0], lines
    assert "JSONL file of input items" in lines[0] and "Kafka" not in lines[0]


def test_evaluate_without_its_data_says_where_the_corpus_is(tmp_path: Path) -> None:
    proc, _ = _run(
        f"127.0.0.1:{free_port()}",
        "evaluate",
        "--model",
        "tiny-tfidf",
        "--data",
        str(tmp_path / "human_ai_corpus.jsonl"),
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not found" in lines[-1], lines
    assert "does not ship with the project" in lines[-1] and "README" in lines[-1]


@pytest.mark.parametrize(
    "args", [["db", "upgrade"], ["verdicts", "post-1"]], ids=lambda a: " ".join(a)
)
def test_a_store_command_without_its_database_says_what_to_do(args: list[str]) -> None:
    env = dict(
        os.environ,
        DATABASE_URL=f"postgresql://127.0.0.1:{free_port()}/nowhere",
        DATABASE_CONNECT_RETRY_MAX_S="0.2",
    )
    proc = subprocess.run(
        [*console_command(), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "nowhere" in errors[0] and "DATABASE_URL" in errors[0], errors
