"""HTTP bodies of the shim (``deepfake-stream shim``): requests, responses and errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from deepfake_stream.schemas.items import BackendName
from deepfake_stream.schemas.verdict import Verdict


class DetectRequest(BaseModel):
    """One text to score. ``id``, ``tenant`` and ``metadata`` are optional and echoed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1)
    """The text to score; at most MAX_TEXT_CHARS characters (longer answers 413)."""
    model_id: str | None = None
    """A registered model id; null means the configured default model."""
    prefer_backend: BackendName | None = None
    """A preference, not an order, exactly as on detect.in."""
    operating_point: str | None = Field(None, min_length=1, max_length=64)
    """One of the model's documented operating points; null means the registry's default."""
    detailed: bool = False
    """Add per-sentence scores (character spans into ``text``)."""
    id: str | None = Field(None, min_length=1, max_length=128)
    """Item id for the verdict; default a fresh ``shim-<hex>`` id."""
    tenant: str | None = None
    """Echoed on the verdict."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Echoed on the verdict."""


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[DetectRequest] = Field(min_length=1)
    """Texts to score, at most HTTP_BATCH_MAX_TEXTS of them."""


class SentenceScore(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: int
    """Offset of the sentence's first character in the request's text."""
    end: int
    """Offset one past its last character: ``text[start:end]`` is the sentence."""
    text: str
    score: float
    label: str


class DetectResponse(Verdict):
    """The verdict the stream gives for the same text and model, plus optional detail."""

    sentences: list[SentenceScore] | None = None
    """Only with ``detailed: true``."""


class BatchResponse(BaseModel):
    verdicts: list[DetectResponse]
    """One per item, in request order."""


class ModelInfo(BaseModel):
    id: str
    kind: str
    size: str
    version: str
    """Release plus artifact hash once the shim has loaded the model, else the release."""
    threshold: float
    backends: list[BackendName]
    """The model's backend chain: preferred first, then fallbacks."""
    default: bool
    loaded_in_shim: bool
    """Whether the shim scores this model in-process right now (it loads on first use)."""
    live_backends: list[BackendName]
    """Backends with a live stream worker for this model."""


class ModelList(BaseModel):
    default: str
    models: list[ModelInfo]


class ErrorBody(BaseModel):
    """Every error answer: a code, a human message, and the request id to quote."""

    error: str
    detail: Any
    request_id: str
