"""The client-side tier in a real browser: headless Chromium runs the shim's JavaScript
scorer on the model the shim serves and must give the Python detector's scores (to 1e-6).

The shim is the real app (``create_app``) served by uvicorn on a free loopback port, with API
keys on and the real broker behind it. The test adds one page of its own to that app, which
imports ``/static/tfidf-scorer.js`` as an ES module, downloads the model with the key (the
scorer checks its sha256), scores the texts and writes the results into the DOM;
``chromium --headless --dump-dom`` returns that DOM. A second, synthetic model in which every
n-gram of every text is a feature checks the browser's Unicode handling (emoji, ß, İ, final
sigma, white space) where the shipped vocabulary would not notice a difference. Skipped, with
the reason, only where no Chromium is installed (``make install-browser`` and ``.ci/run``
install Debian's).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi.responses import HTMLResponse, JSONResponse

from deepfake_stream.consumers.scoring import prepare
from deepfake_stream.embedded_broker import free_port
from deepfake_stream.models.detectors.tfidf import TfidfModel
from deepfake_stream.models.registry import load_registry
from deepfake_stream.shim import create_app
from tests.conftest import unique_settings
from tests.js_scorer_parity import PARITY_TEXTS, TOLERANCE, every_ngram_model, python_reference

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no Chromium: `make install-browser` (Debian package chromium)"
    ),
]
API_KEY = "js-scorer-test-key"

_PAGE = """<!doctype html>
<meta charset="utf-8">
<pre id="out">pending</pre>
<script type="module">
import "/static/tfidf-scorer.js";
const out = document.getElementById("out");
try {
  const texts = await (await fetch("/_test/texts.json")).json();
  const scorer = await TfidfScorer.load("/v1/models/tiny-tfidf/download",
                                        {headers: {"X-API-Key": "%s"}});
  const synthetic = new TfidfScorer(await (await fetch("/_test/every-ngram-model.json")).json());
  const run = (s) => texts.map((t) => [s.score(t), s.decision(t)]);
  out.textContent = JSON.stringify({version: scorer.version, sha256: scorer.sha256,
                                    verified: Boolean(crypto.subtle), results: run(scorer),
                                    every_ngram: run(synthetic)});
} catch (err) {
  out.textContent = JSON.stringify({error: String(err)});
}
</script>
"""


@pytest.fixture(scope="module")
def shim(kafka_bootstrap: str) -> Iterator[str]:
    """The shim with API keys on, plus the test's page; yields its base URL."""
    port = free_port()
    settings = unique_settings(
        kafka_bootstrap, http__port=port, api__api_keys=API_KEY, http__rate_limit_rps=0
    )
    app = create_app(settings)
    app.add_api_route("/_test/parity", lambda: HTMLResponse(_PAGE % API_KEY))
    app.add_api_route("/_test/texts.json", lambda: JSONResponse(PARITY_TEXTS))
    synthetic = every_ngram_model(PARITY_TEXTS)
    app.add_api_route("/_test/every-ngram-model.json", lambda: JSONResponse(synthetic))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="shim", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the shim did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def dump_dom(url: str, tmp_path: Path, extra_flags: list[str] | None = None) -> str:
    """The page's DOM once its scripts have run (virtual time lets fetches finish first)."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=30000",
            *(extra_flags or []),
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def element_text(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', dom, re.DOTALL)
    assert match, f"no #{element_id} in the dumped page:\n{dom[:2000]}"
    return html.unescape(match.group(1))


def get(url: str, **headers: str) -> tuple[int, Message, bytes]:
    """Status, headers (case-insensitive) and body of a GET."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


@pytest.fixture(scope="module")
def browser(shim: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What Chromium computed on the test's page: version, sha256, [score, logit] per text."""
    dom = dump_dom(f"{shim}/_test/parity", tmp_path_factory.mktemp("chromium"))
    got: dict[str, Any] = json.loads(element_text(dom, "out"))
    assert "error" not in got, got["error"]
    return got


def test_chromium_scores_match_the_python_detector(browser: dict[str, Any]) -> None:
    version, scores, logits = python_reference(PARITY_TEXTS)
    assert browser["version"] == version  # what the stream's verdicts carry as model_version
    assert browser["verified"] is True  # the browser checked the download's sha256
    assert len(browser["results"]) == len(PARITY_TEXTS)
    for text, (js_score, js_logit), score, logit in zip(
        PARITY_TEXTS, browser["results"], scores, logits, strict=True
    ):
        assert abs(js_score - score) <= TOLERANCE, (text[:80], js_score, score)
        assert abs(js_logit - logit) <= TOLERANCE, (text[:80], js_logit, logit)


def test_chromium_tokenises_exactly_like_python(browser: dict[str, Any]) -> None:
    """On a model where every n-gram of every text is a feature (emoji, ß, İ, final sigma,
    every kind of white space), Chromium's Unicode handling must still agree with Python's."""
    model = TfidfModel(every_ngram_model(PARITY_TEXTS))
    got = np.asarray(browser["every_ngram"])
    np.testing.assert_allclose(got[:, 1], model.decision_function(PARITY_TEXTS), rtol=0, atol=1e-9)
    np.testing.assert_allclose(got[:, 0], model.predict_proba(PARITY_TEXTS), rtol=0, atol=1e-9)


def _scored_as_given(text: str) -> bool:
    """Whether the server scores ``text`` exactly as given: normalisation leaves it alone and
    it fits one window. The browser scores the text as given, in one pass."""
    config = load_registry().resolve("tiny-tfidf")
    prepared = prepare(text, config, max_windows=64)
    return prepared.norm.text == text and len(prepared.windows.bounds) == 1


def test_browser_scores_equal_the_shims_verdicts(shim: str, browser: dict[str, Any]) -> None:
    """On text the server scores as given, the browser's score is the verdict's. Text the
    server normalises (NFKC, evasion) or windows (longer than one window) can differ: the
    README's client-side tier says so."""
    picked = [i for i, t in enumerate(PARITY_TEXTS) if t.strip() and _scored_as_given(t)]
    assert len(picked) >= 30, "most parity texts are scored as given"
    body = {"items": [{"text": PARITY_TEXTS[i], "model_id": "tiny-tfidf"} for i in picked]}
    request = urllib.request.Request(
        f"{shim}/v1/detect/batch",
        data=json.dumps(body).encode(),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        verdicts = json.load(response)["verdicts"]
    assert len(verdicts) == len(picked)
    for i, verdict in zip(picked, verdicts, strict=True):
        assert verdict["model_version"] == browser["version"]
        assert abs(verdict["score"] - browser["results"][i][0]) <= TOLERANCE


def test_demo_and_scorer_need_no_key_but_the_model_does(shim: str) -> None:
    status, headers, body = get(f"{shim}/demo")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert b'src="/static/tfidf-scorer.js"' in body
    status, headers, body = get(f"{shim}/static/tfidf-scorer.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert b"globalThis" in body

    assert get(f"{shim}/v1/models/tiny-tfidf/download")[0] == 401
    assert get(f"{shim}/v1/models/tiny-tfidf/download", **{"X-API-Key": "wrong"})[0] == 401
    status, headers, body = get(f"{shim}/v1/models/tiny-tfidf/download", **{"X-API-Key": API_KEY})
    assert status == 200
    doc = json.loads(body)
    assert doc["model_id"] == "tiny-tfidf" and doc["format"] == "deepfake-stream/tfidf@1"
    assert headers["X-Model-Version"] == doc["version"]
    status, _, _ = get(
        f"{shim}/v1/models/tiny-tfidf/download",
        **{"X-API-Key": API_KEY, "If-None-Match": headers["ETag"]},
    )
    assert status == 304


def test_demo_page_asks_for_the_key_the_shim_requires(shim: str, tmp_path: Path) -> None:
    dom = dump_dom(f"{shim}/demo?text=Hello%20there", tmp_path)
    assert "needs an API key" in element_text(dom, "status")
