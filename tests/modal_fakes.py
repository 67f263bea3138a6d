"""Stand-ins for the deployed Modal app, injected into ModalDetector as its ``connect``:
a healthy remote, one that hangs, one whose lookup fails, and the real app class run
through Modal's ``.local()`` (the very code ``modal deploy`` ships, no credentials)."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from deepfake_stream.models.modal_detector import Connect, RemoteScore

APP_FILE = Path(__file__).resolve().parents[1] / "deploy" / "modal" / "app.py"


def echo_score(text: str) -> float:
    return hashlib.sha256(text.encode()).digest()[0] / 255


class FakeRemote:
    """Answers like the app (echo scores); counts calls and the most ever in flight."""

    def __init__(self, delay_s: float = 0.0, version: str = "t1+sha256:remote000000") -> None:
        self.delay_s = delay_s
        self.version = version
        self.calls: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    async def __call__(self, texts: list[str]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(len(texts))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            return {"scores": [echo_score(t) for t in texts], "model_version": self.version}
        finally:
            with self._lock:
                self.in_flight -= 1

    def connect(self) -> Connect:
        async def connect() -> RemoteScore:
            return self

        return connect


async def hang(texts: list[str]) -> dict[str, Any]:
    """A Modal call that never answers (a wedged container, a dropped connection)."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def connect_to(remote: RemoteScore) -> Connect:
    async def connect() -> RemoteScore:
        return remote

    return connect


def failing_lookup(exc: BaseException) -> Connect:
    async def connect() -> RemoteScore:
        raise exc

    return connect


def auth_error() -> BaseException:
    import modal.exception

    return modal.exception.AuthError(
        "Token missing. Could not authenticate client. If you have token credentials, see "
        "modal.com/docs/sdk/py/latest/config for setup help."
    )


def load_app_module() -> ModuleType:
    """deploy/modal/app.py, imported by path (``deploy`` is not a package)."""
    name = "deepfake_stream_modal_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, APP_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def local_app_connect(model_id: str) -> Connect:
    """The app's own class, called through Modal's ``.local()``; a thread keeps each blocking
    call off the bridge's event loop, as a remote call would be.

    ``.local()`` runs ``@modal.enter`` on the first call of an instance, with no lock; the
    lookup makes that first call (empty input), so concurrent calls find it entered, as in a
    Modal container, which is entered before it takes inputs."""
    obj = load_app_module().Detector(model_id=model_id)

    async def call(texts: list[str]) -> dict[str, Any]:
        return await asyncio.to_thread(obj.score.local, texts)  # type: ignore[no-any-return]

    async def connect() -> RemoteScore:
        await call([])
        return call

    return connect
