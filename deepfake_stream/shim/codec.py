"""Request bodies read through the shared input codec before FastAPI parses them.

FastAPI's own JSON parsing accepts ``NaN``/``Infinity`` (which then became null), keeps lone
surrogate escapes (which failed later as a 500), and answers 400 to JSON nested past
Python's recursion limit. Every ``/v1`` body is first read by :func:`schemas.load_json`, the
codec the router uses, so the shim answers 422 with the reason the stream would dead-letter
the same bytes with (``invalid_json``, ``invalid_schema``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from deepfake_stream.core.errors import InvalidInput
from deepfake_stream.schemas.validate import load_json
from deepfake_stream.shim.errors import ApiError


class CodecRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def read_then_handle(request: Request) -> Response:
            body = await request.body()  # cached: FastAPI reads the same bytes after this
            if body:
                depth = request.app.state.shim.settings.limits.max_json_depth
                try:
                    load_json(body, max_json_depth=depth)
                except InvalidInput as exc:
                    raise ApiError(422, exc.reason, str(exc)) from None
            return await handler(request)

        return read_then_handle
