"""Input items (``detect.in``) and routed items (``detect.backend.*``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deepfake_stream.core.settings import Backend

BackendName = Backend
"""``cpu``, ``gpu`` or ``modal``: defined once, in the core (settings name the backends'
topics), and named here for the messages."""


class InputItem(BaseModel):
    """One text to score, as upstream platforms publish it.

    Unknown fields are ignored so producers can add fields before consumers learn them;
    strict types so an id of the wrong type is rejected, not coerced.
    """

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    id: str = Field(min_length=1, max_length=128)
    """Stable item id; also the Kafka key."""
    text: str = Field(min_length=1)
    """The text to score; at most MAX_TEXT_CHARS characters."""
    model_id: str | None = None
    """A registered model id; null means the configured default model."""
    prefer_backend: BackendName | None = None
    """A preference, not an order: the router falls back when that backend is not live."""
    tenant: str | None = None
    """Echoed on the verdict."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Echoed on the verdict."""
    deadline_ms: int | None = None
    """Epoch milliseconds; an item still unscored then is dead-lettered as deadline_exceeded."""
    operating_point: str | None = Field(None, min_length=1, max_length=64)
    """One of the model's documented operating points (``strict``, ``balanced``,
    ``sensitive``); null means the registry's default. An unknown one is invalid_schema."""
    detail: bool = False
    """Ask for ``spans`` (each window's score, in character offsets) on the verdict."""

    @field_validator("text")
    @classmethod
    def _has_content(cls, text: str) -> str:
        # A blank text has nothing to score (a detector still gives it a confident score).
        if text.isspace():
            raise ValueError("text must contain a non-whitespace character")
        return text


class RoutingEnvelope(BaseModel):
    """What the router decided, and what has happened to the item since."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_id: str
    """The chosen model."""
    target: BackendName
    """The backend this copy of the item is addressed to."""
    chain: list[BackendName] = Field(default_factory=list)
    """Backends still left to try after ``target``, in order."""
    attempts: int = Field(1, ge=1)
    """Backends tried so far, counting ``target``."""
    fallback_from: list[BackendName] = Field(default_factory=list)
    """Backends that were tried and failed, in order."""
    first_seen_ms: int
    """Epoch milliseconds when the system first saw the item (router read time)."""
    trace: dict[str, str] = Field(default_factory=dict)
    """W3C trace context (traceparent, tracestate) of the item."""
    replay: bool = False
    """True when the item was re-injected by `deepfake-stream replay`."""


class RoutedItem(InputItem):
    """The input item plus its routing envelope."""

    model_config = ConfigDict(strict=False, extra="ignore", frozen=True)

    routing: RoutingEnvelope

    @classmethod
    def first_hop(
        cls,
        item: InputItem,
        *,
        model_id: str,
        target: BackendName,
        chain: list[BackendName],
        first_seen_ms: int,
        trace: dict[str, str],
        replay: bool = False,
    ) -> RoutedItem:
        """The item as the router sends it to its first backend (the shim builds the same).

        ``item`` is already validated: its fields are taken as they are rather than dumped and
        validated again (8% of the router's CPU at saturation, py-spy 2026-12-04)."""
        fields = {name: getattr(item, name) for name in InputItem.model_fields}
        return cls.model_construct(
            **fields,
            routing=RoutingEnvelope(
                model_id=model_id,
                target=target,
                chain=chain,
                attempts=1,
                first_seen_ms=first_seen_ms,
                trace=trace,
                replay=replay,
            ),
        )
