"""A small client for upstream integrators: publish items to ``detect.in``.

    import asyncio
    from deepfake_stream.producers.client import DetectProducer

    async def main():
        async with DetectProducer("127.0.0.1:9092") as producer:
            await producer.submit("post-123", "Text to check ...", tenant="forum")

    asyncio.run(main())

Each item is validated against the contract before it is sent (a bad item raises
``InvalidInput`` here rather than becoming a dead letter later), keyed by its id, and
acknowledged by all in-sync replicas before ``submit``/``flush`` return.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import SpanKind

from deepfake_stream.core.errors import InvalidInput
from deepfake_stream.core.kafka import make_producer
from deepfake_stream.core.settings import Settings, load_settings
from deepfake_stream.core.tracing import carrier_of, start_hop_span, trace_headers
from deepfake_stream.schemas import InputItem, parse_input


class DetectProducer:
    def __init__(
        self, bootstrap_servers: str | None = None, *, settings: Settings | None = None
    ) -> None:
        overrides = {("kafka", "bootstrap_servers"): bootstrap_servers} if bootstrap_servers else {}
        self.settings = settings or load_settings(overrides)
        self._producer: AIOKafkaProducer = make_producer(self.settings, role="producer")
        self._pending: list[asyncio.Future[Any]] = []

    async def __aenter__(self) -> DetectProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.flush()
        finally:
            await self._producer.stop()

    def validate(self, raw: bytes) -> InputItem:
        limits = self.settings.limits
        return parse_input(
            raw,
            max_text_chars=limits.max_text_chars,
            max_message_bytes=limits.max_message_bytes,
            max_json_depth=limits.max_json_depth,
        )

    async def send_item(
        self, item: InputItem, *, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        """Queue one item; call :meth:`flush` (or leave the ``async with``) to await acks.

        Without a ``traceparent`` in ``headers``, the item's trace starts here with a producer
        span (when this process has an OpenTelemetry SDK; else the router starts it)."""
        headers = list(headers or [])
        if not any(k == "traceparent" for k, _ in headers):
            span = start_hop_span(
                f"send {self.settings.topics.input}",
                None,
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": self.settings.topics.input,
                    "messaging.kafka.message.key": item.id,
                },
            )
            span.end()
            headers += trace_headers(carrier_of(span))
        fut = await self._producer.send(
            self.settings.topics.input,
            item.model_dump_json().encode(),
            key=item.id.encode(),
            headers=headers,
        )
        self._pending.append(fut)
        if len(self._pending) >= 10_000:
            await self.flush()

    async def submit(self, id: str, text: str, **fields: Any) -> None:
        """Validate, send and wait for the broker's acknowledgement."""
        try:
            item = InputItem.model_validate({"id": id, "text": text, **fields})
        except ValueError as exc:
            raise InvalidInput("invalid_schema", str(exc)) from None
        await self.send_item(item)
        await self.flush()

    async def send_raw(self, value: bytes, *, key: bytes | None = None) -> None:
        """Send bytes unchanged (no validation): for testing the dead-letter path."""
        self._pending.append(await self._producer.send(self.settings.topics.input, value, key=key))

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)
