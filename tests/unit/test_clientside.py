"""The client-side tier's endpoints in the shim app (no broker): the portable model download,
the demo page and the scorer's static files."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deepfake_stream.core.settings import load_settings
from deepfake_stream.models.artifacts import artifact_dir, load_verified
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.registry import load_registry
from deepfake_stream.shim import create_app
from deepfake_stream.shim.clientside import export_portable
from tests.js_scorer_parity import SCORER_JS

KEY = "k-clientside"
DOWNLOAD = "/v1/models/tiny-tfidf/download"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = load_settings({("api", "api_keys"): KEY, ("http", "rate_limit_rps"): 0})
    with TestClient(create_app(settings, connect_kafka=False)) as c:
        yield c


def download(client: TestClient, **headers: str):  # type: ignore[no-untyped-def]
    return client.get(DOWNLOAD, headers={"X-API-Key": KEY, "Accept-Encoding": "identity"} | headers)


def test_download_is_the_artifact_with_its_version_and_digest(client: TestClient) -> None:
    response = download(client)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    manifest = load_verified(artifact_dir("tiny-tfidf"))
    raw = (manifest.directory / "model.json").read_bytes()
    detector = build_detector(load_registry().resolve("tiny-tfidf").spec())
    asyncio.run(detector.load())
    assert doc["model_id"] == "tiny-tfidf" and doc["kind"] == "tfidf"
    assert doc["format"] == "deepfake-stream/tfidf@1"
    assert doc["version"] == detector.version == response.headers["x-model-version"]
    # The registry's default operating point, as the stream uses it.
    config = load_registry().resolve("tiny-tfidf")
    assert doc["threshold"] == config.threshold
    # A text under min_words takes the point's short texts' threshold, as on the stream.
    point = config.operating_points[config.default_operating_point or ""]
    assert doc["min_words"] == config.min_words and config.min_words > 0
    assert doc["short_threshold"] == point.short_threshold > doc["threshold"]
    # sha256 covers the "model" member byte for byte: what the manifest lists, and what a
    # client can check by hashing the text between '"model":' and the final '}'.
    assert doc["sha256"] == manifest.files["model.json"] == hashlib.sha256(raw).hexdigest()
    assert doc["size_bytes"] == len(raw)
    body = response.content
    start = body.index(b'"model":') + len(b'"model":')
    assert body[start:-1] == raw
    assert doc["model"] == json.loads(raw)
    assert set(doc["model"]) >= {"format", "tokenizer", "intercept", "blocks"}
    block = doc["model"]["blocks"][0]
    assert set(block) >= {"analyzer", "ngram_range", "vocabulary", "idf", "coef"}
    assert doc["model"]["tokenizer"]["word_token"]["js"] == r"[\p{L}\p{N}_]{2,}"


def test_download_needs_the_key(client: TestClient) -> None:
    assert client.get(DOWNLOAD).status_code == 401
    wrong = client.get(DOWNLOAD, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "unauthorized" and "Traceback" not in wrong.text


def test_download_is_cacheable_and_gzipped(client: TestClient) -> None:
    plain = download(client)
    assert plain.headers["cache-control"] == "private, no-cache"
    assert "Accept-Encoding" in plain.headers["vary"]
    etag = plain.headers["etag"]
    again = download(client, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag

    zipped = client.get(DOWNLOAD, headers={"X-API-Key": KEY, "Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["etag"] != etag  # another representation, another tag
    assert int(zipped.headers["content-length"]) < len(plain.content) / 2
    assert zipped.content == plain.content  # the client decoded it
    refused = download(client, **{"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers
    # a cached gzip copy revalidates too
    assert download(client, **{"If-None-Match": zipped.headers["etag"]}).status_code == 304


@pytest.mark.parametrize(
    ("model_id", "says"),
    [("small-perplexity", "no portable form"), ("no-such-model", "not registered")],
)
def test_download_of_other_models_is_404(client: TestClient, model_id: str, says: str) -> None:
    response = client.get(f"/v1/models/{model_id}/download", headers={"X-API-Key": KEY})
    assert response.status_code == 404
    assert says in response.json()["detail"]


def test_demo_and_static_files_need_no_key(client: TestClient) -> None:
    demo = client.get("/demo")
    assert demo.status_code == 200 and demo.headers["content-type"].startswith("text/html")
    csp = demo.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    for src in ("/static/tfidf-scorer.js", "/static/demo.js", "/static/demo.css"):
        assert f'"{src}"' in demo.text
        response = client.get(src)
        assert response.status_code == 200, src
        assert response.headers["x-content-type-options"] == "nosniff"
        again = client.get(src, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
    assert client.get("/static/tfidf-scorer.js").content == SCORER_JS.read_bytes()


@pytest.mark.parametrize("name", ["demo.html", "../clientside.py", "..%2Fclientside.py", "x.js"])
def test_static_serves_only_its_listed_files(client: TestClient, name: str) -> None:
    assert client.get(f"/static/{name}").status_code == 404


def test_download_is_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/models/{model_id}/download" in paths and "/demo" in paths


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_scorer_load_checks_the_sha256(tmp_path: Path) -> None:
    """TfidfScorer.load() refuses a download whose model bytes do not match its sha256."""
    body = export_portable(load_registry().resolve("tiny-tfidf")).body
    good = tmp_path / "good.json"
    good.write_bytes(body)
    bad = tmp_path / "bad.json"
    bad.write_bytes(body.replace(b'"intercept":', b'"intercept": ', 1))  # same JSON, new bytes
    script = """
const fs = require("fs");
const Scorer = require(process.argv[1]);
const fetch = async (path) => new Response(fs.readFileSync(path));
(async () => {
  const out = [];
  for (const path of process.argv.slice(2)) {
    try { const s = await Scorer.load(path, {fetch}); out.push([s.version, s.score("hi")]); }
    catch (e) { out.push(e.message); }
  }
  console.log(JSON.stringify(out));
})();
"""
    done = subprocess.run(
        ["node", "-e", script, str(SCORER_JS), str(good), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    loaded, refused = json.loads(done.stdout)
    assert loaded[0].startswith("2026.11.1+sha256:") and 0.0 <= loaded[1] <= 1.0
    assert "does not match its sha256" in refused


def test_export_is_gzip_of_the_body() -> None:
    portable = export_portable(load_registry().resolve("tiny-tfidf"))
    assert gzip.decompress(portable.gzipped) == portable.body
