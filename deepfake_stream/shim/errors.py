"""Errors as the shim answers them: ``{"error", "detail", "request_id"}``, never a trace.

Every request gets an id (the client's ``X-Request-ID`` when it is a sane token, else a fresh
one), echoed in the ``X-Request-ID`` response header and in every error body, so an operator
can find the server-side log line (which does carry the trace) for a client's report.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ApiError(Exception):
    """Raised anywhere in the shim; answered with ``status`` and a JSON error body."""

    def __init__(
        self, status: int, code: str, detail: object, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def request_id_of(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id", "-"))


def error_body(code: str, detail: Any, request_id: str) -> bytes:
    return json.dumps({"error": code, "detail": detail, "request_id": request_id}).encode()


async def send_error(
    send: Send,
    scope: Scope,
    status: int,
    code: str,
    detail: Any,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer from raw ASGI (middlewares that must not run the app)."""
    body = error_body(code, detail, request_id_of(scope))
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    """Gives each request an id (``request.state.request_id``) and returns it as a header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == REQUEST_ID_HEADER.encode()),
            "",
        )
        rid = given if _SANE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (REQUEST_ID_HEADER.encode(), rid.encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)
