"""Request body size limit, enforced before a body is read whole.

A declared ``Content-Length`` over ``HTTP_MAX_BODY_BYTES`` is answered 413 at once, without
reading a byte of the body. A body without a length (chunked) is counted as it streams in;
the moment it passes the limit the client gets 413 and the app sees a disconnect, so memory
stays bounded by the limit whatever the client sends.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deepfake_stream.shim.errors import send_error


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> str:
        return f"request body is {size}; the limit is {self.max_bytes} bytes (HTTP_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await send_error(send, scope, 400, "bad_request", "invalid Content-Length header")
                return
            if length > self.max_bytes:
                await send_error(send, scope, 413, "too_large", self._too_large(f"{length} bytes"))
                return

        received = 0
        started = False
        answered = False

        async def counted_receive() -> Message:
            nonlocal received, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not started:
                    answered = True
                    await send_error(
                        send, scope, 413, "too_large", self._too_large(f"over {received} bytes")
                    )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 went out already; drop what the app says after the disconnect
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not answered:
                raise
