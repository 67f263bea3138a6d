"""The pages a person opens: `/` links everything, `/docs` and `/redoc` render in a real
browser with the network off (their assets ship with the project, no CDN)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from deepfake_stream.core.settings import load_settings
from deepfake_stream.embedded_broker import free_port
from deepfake_stream.shim import create_app
from tests.integration.test_js_scorer import CHROMIUM, dump_dom

pytestmark = pytest.mark.integration
KEY = "docs-pages-test-key"


def _app():  # type: ignore[no-untyped-def]
    settings = load_settings({("api", "api_keys"): KEY, ("http", "rate_limit_rps"): 0})
    return create_app(settings, connect_kafka=False)


@pytest.fixture(scope="module")
def shim() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(_app(), host="127.0.0.1", port=port, log_level="warning")
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


# Every host name resolves to nothing and every other connection goes to a dead proxy:
# only the shim on 127.0.0.1 (loopback is never proxied) can answer.
OFFLINE = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
]


def test_index_links_every_page_without_a_key() -> None:
    with TestClient(_app()) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        links = set(re.findall(r'href="([^"]+)"', page.text))
        for path in ("/docs", "/redoc", "/demo", "/healthz", "/metrics", "/asyncapi"):
            assert path in links
            assert client.get(path).status_code == 200, path
        for path in ("/docs", "/redoc"):
            assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', client.get(path).text)
            assert assets and all(a.startswith("/docs-assets/") for a in assets), assets
            for a in assets:
                assert client.get(a).status_code == 200, a
        assert client.get("/docs-assets/..%2Fcore.py").status_code == 404


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: `make install-browser`")
@pytest.mark.parametrize("page", ["docs", "redoc"])
def test_docs_render_offline_in_chromium(shim: str, page: str, tmp_path: Path) -> None:
    dom = dump_dom(f"{shim}/{page}", tmp_path, extra_flags=OFFLINE)
    # Rendered operations, not the bare HTML shell: both UIs write each path into the page
    # (Swagger UI with line-break hints between its segments).
    text = dom.replace("\u200b", "").replace("<wbr>", "")
    for path in ("/v1/detect", "/v1/detect/batch", "/v1/models"):
        assert f">{path}<" in text, f"{path} not rendered:\n{dom[:3000]}"
