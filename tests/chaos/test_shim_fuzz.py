"""The HTTP shim under schemathesis, driven by its own OpenAPI document: no generated request,
however odd, gets a 5xx. The shim runs under `up` with the whole pipeline behind it, so
``?via=stream`` requests are answered by the live stream, and with an API key configured."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from deepfake_stream.embedded_broker import free_port
from tests.system import deepfake_up, wait_for_verdict_of

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow]

KEY = "chaos-fuzz-key"
MAX_EXAMPLES = 30


def _schemathesis() -> str:
    import sys

    return str(Path(sys.executable).with_name("schemathesis"))


def _ready(base: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


async def test_shim_answers_no_5xx_to_schemathesis(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    with deepfake_up(
        tmp_path,
        HTTP_PORT=str(port),
        DETECT_API_KEYS=KEY,
        HTTP_RATE_LIMIT_RPS="0",  # a 429 would hide the endpoints behind it
    ) as up:
        await wait_for_verdict_of(up.bootstrap, "probe-0")  # the stream answers ?via=stream
        base = f"http://127.0.0.1:{port}"
        assert _ready(base), f"shim not ready:\n{up.log()[-3000:]}"
        started = time.monotonic()
        run = subprocess.run(
            [
                _schemathesis(),
                "run",
                f"{base}/openapi.json",
                "--header",
                f"X-API-Key: {KEY}",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                "20261122",
                "--request-timeout",
                "30",
                "--workers",
                "1",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    cases = re.search(r"(\d+) generated", output)
    n = int(cases.group(1)) if cases else 0
    server_errors = len(re.findall(r"Server error", output))
    ops = re.search(r"Tested: (\d+)", output)
    print(
        f"\nchaos[shim-schemathesis]: {n} generated requests over {ops.group(1) if ops else '?'} "
        f"operations, {server_errors} server errors (5xx), {elapsed:.1f}s, exit {run.returncode}",
        flush=True,
    )
    assert run.returncode == 0, output[-6000:]
    assert n > 0, output[-3000:]
