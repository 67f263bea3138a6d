"""The AsyncAPI document of every topic and message, generated from the code.

FastStream builds it: a ``KafkaBroker`` (never connected) declares, for each topic, who
publishes to it and who consumes it, with the pydantic models of ``schemas/`` as payloads,
so the document cannot drift from the messages the services really exchange. Topic names
are the defaults of ``TopicSettings`` (or the given settings').

Why declared handlers and not the services' own subscribers (``core.stage_app``): a stage's
real handler takes each batch raw, on purpose (FastStream's parser would skip, uncommitted, a
record it cannot decode, and hostile input must reach the stage to be dead-lettered), so it
carries no payload type for FastStream to document; the declarations here carry it.

``deepfake-stream asyncapi`` writes it (``docs/asyncapi.yaml`` is the checked-in copy, kept
up to date by a unit test); the HTTP shim serves :func:`asyncapi_document` at ``/asyncapi``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI, Contact, License

from deepfake_stream import __version__
from deepfake_stream.core.liveness import Heartbeat
from deepfake_stream.core.settings import BACKENDS, TopicSettings
from deepfake_stream.schemas import InputItem, RoutedItem, Verdict
from deepfake_stream.schemas.dead_letter import DLQ_HEADERS

TITLE = "deepfake-stream"
DESCRIPTION = """\
Detects AI-generated text as an event-driven service on Kafka. Upstream platforms publish
input items to the input topic; the router validates each item, picks its model and a live
backend, and republishes it with a routing envelope to that backend's topic; workers score
items in micro-batches and publish verdicts; anything that cannot be scored becomes a dead
letter. Every message is keyed by the item id and carries the item's W3C trace context in the
`traceparent`/`tracestate` headers. Delivery is at-least-once: consumers de-duplicate verdicts
by `id` and `model_version`."""


def _consumer(model: type[Any]) -> Callable[..., Awaitable[None]]:
    """A handler whose only purpose is to declare the payload type it consumes."""

    async def consume(message: Any) -> None:
        return None

    # Set the real type: with postponed annotations the signature would hold a string.
    consume.__annotations__["message"] = model
    return consume


def _declare(broker: KafkaBroker, topics: TopicSettings) -> None:
    def both(
        topic: str,
        payload: type[Any],
        *,
        writers: str,
        readers: str,
        what: str,
        group: str | None = None,
    ) -> None:
        broker.publisher(
            topic,
            title=f"{topic}:publish",
            description=f"{what} Written by {writers}.",
            schema=payload,
        )
        broker.subscriber(
            topic,
            group_id=group,
            title=f"{topic}:consume",
            description=f"{what} Read by {readers}.",
        )(_consumer(payload))

    both(
        topics.input,
        InputItem,
        writers="upstream platforms, the HTTP shim and `deepfake-stream replay` (key: item id)",
        readers="the router (group `<KAFKA_GROUP_PREFIX>.router`)",
        what="Input items to score.",
        group="deepfake-stream.router",
    )
    for backend in BACKENDS:
        reader = "the Modal bridge" if backend == "modal" else f"{backend} workers"
        both(
            topics.backend(backend),
            RoutedItem,
            writers="the router, and workers handing a failed item to its next fallback",
            readers=f"{reader} (group `<KAFKA_GROUP_PREFIX>.{backend}`), in micro-batches",
            what=f"Items routed to the {backend} backend: the input item plus its routing "
            "envelope.",
            group=f"deepfake-stream.{backend}",
        )
    both(
        topics.verdicts,
        Verdict,
        writers="workers and the Modal bridge (key: item id; headers: the item's trace context)",
        readers="moderation systems, `deepfake-stream tail` and the HTTP shim (?via=stream)",
        what="Verdicts.",
    )
    headers = "; ".join(f"`{k}`: {v}" for k, v in DLQ_HEADERS.items())
    both(
        topics.dlq,
        bytes,
        writers="any stage (key: item id when known)",
        readers="operators (`deepfake-stream tail --dlq`) and `deepfake-stream replay --dlq`",
        what=f"Dead letters: the original message bytes, unchanged, with the headers {headers}.",
    )
    both(
        topics.heartbeats,
        Heartbeat,
        writers="every worker and the Modal bridge, every WORKER_HEARTBEAT_INTERVAL_S",
        readers="the router and workers (no consumer group, from the earliest offset)",
        what="Worker liveness announcements.",
    )


def build_asyncapi(
    topics: TopicSettings | None = None, bootstrap: str = "127.0.0.1:9092"
) -> AsyncAPI:
    broker = KafkaBroker(bootstrap, description="Kafka cluster (KAFKA_BOOTSTRAP_SERVERS)")
    _declare(broker, topics or TopicSettings.model_construct())
    return AsyncAPI(
        broker,
        title=TITLE,
        version=__version__,
        description=" ".join(DESCRIPTION.split()),
        contact=Contact(name="deepfake-stream maintainers"),
        license=License(name="Proprietary"),
        schema_version="3.0.0",
    )


def asyncapi_document(topics: TopicSettings | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a JSON-able dict (served by the shim at /asyncapi).

    Channels, operations and components are sorted by name: FastStream collects endpoints
    in an unordered way, and the checked-in copy must not change from run to run.
    """
    doc: dict[str, Any] = json.loads(build_asyncapi(topics).to_specification().to_json())
    for key in ("channels", "operations"):
        doc[key] = dict(sorted(doc.get(key, {}).items()))
    components = doc.get("components", {})
    for key in list(components):
        components[key] = dict(sorted(components[key].items()))
    return doc


def asyncapi_yaml(topics: TopicSettings | None = None) -> str:
    return yaml.safe_dump(asyncapi_document(topics), sort_keys=False, allow_unicode=True)
