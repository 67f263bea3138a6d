"""Audit middleware: every API request is recorded in the verdict store's audit log.

Recorded: time, request id, key id (a fingerprint, never the key), tenant, method and path,
status, model, the verdict ids returned, SHA-256 and length of each text (never the text),
client address, duration. Endpoints add what only they know to ``request.state.audit``.
Health, readiness and metrics probes are not recorded (they would drown the log). Writing is
off the request path: see ``deepfake_stream/store/audit.py``.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deepfake_stream.shim.auth import API_KEY_HEADER, key_id
from deepfake_stream.store.audit import AuditWriter
from deepfake_stream.store.rows import clean

UNRECORDED = frozenset({"/healthz", "/readyz", "/metrics"})
_KEY_HEADER = API_KEY_HEADER.lower().encode()


def note(request: Request, **fields: Any) -> None:
    """What an endpoint adds to its request's audit row (model_id, verdict_ids, texts)."""
    audit = getattr(request.state, "audit", None)
    if audit is None:
        audit = {}
        request.state.audit = audit
    audit.update(fields)


def text_digest(text: str) -> dict[str, Any]:
    return {
        "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
        "length": len(text),
    }


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, writer: AuditWriter) -> None:
        self.app = app
        self.writer = writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNRECORDED:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        at = datetime.now(UTC)
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self.writer.record(self._row(scope, at, status, time.perf_counter() - started))

    @staticmethod
    def _row(scope: Scope, at: datetime, status: int, elapsed: float) -> dict[str, Any]:
        state = scope.get("state", {})
        principal = state.get("principal")
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == _KEY_HEADER), None)
        audit = state.get("audit", {})
        client = scope.get("client")
        return clean(
            {
                "at": at,
                "request_id": str(state.get("request_id", ""))[:128] or None,
                # A rejected key is fingerprinted too: failed attempts show up in the log.
                "key_id": principal.key_id if principal else key_id(given),
                "tenant": principal.tenant if principal else None,
                "method": scope["method"][:16],
                "endpoint": scope["path"][:512],
                "status": status,
                "model_id": audit.get("model_id"),
                "verdict_ids": audit.get("verdict_ids"),
                "texts": audit.get("texts"),
                "client": client[0][:128] if client else None,
                "duration_ms": round(elapsed * 1000, 3),
            }
        )
