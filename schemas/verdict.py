"""Verdicts (``detect.verdicts``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.items import BackendName


def utc_now_iso() -> str:
    """ISO 8601 UTC with milliseconds and a Z, as the contract shows."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    model_id: str
    model_version: str
    score: float = Field(ge=0.0, le=1.0)
    """Probability that the text is AI-generated."""
    label: Literal["ai", "human"]
    is_fake: bool
    threshold: float = Field(ge=0.0, le=1.0)
    """The threshold of ``operating_point``: chosen at a stated FPR on held-out human texts."""
    operating_point: str | None = None
    """The operating point that gave ``threshold`` (null: a model not yet calibrated)."""
    confidence: Literal["high", "medium", "low"] | None = None
    """Calibrated score band of the verdict; the README's model card states each band's
    measured precision. Null only on verdicts from before confidence existed."""
    backend: BackendName
    fallback_from: list[BackendName] = Field(default_factory=list)
    attempts: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    latency_ms: float = Field(ge=0.0)
    """From the item's first sight by the system to the verdict."""
    scored_at: str
    replay: bool = False
    tenant: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    text_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    """SHA-256 hex of the text as received: part of the de-duplication key (tenant, id,
    model_version, text_sha256). Every verdict carries it; optional only so verdicts written
    before it existed still parse."""

    @model_validator(mode="after")
    def _label_matches_score(self) -> Verdict:
        expected = "ai" if self.score >= self.threshold else "human"
        if self.label != expected or self.is_fake != (self.label == "ai"):
            raise ValueError("label/is_fake must follow score >= threshold")
        return self

    @classmethod
    def from_score(cls, *, score: float, threshold: float, **fields: Any) -> Verdict:
        label = "ai" if score >= threshold else "human"
        return cls(score=score, threshold=threshold, label=label, is_fake=label == "ai", **fields)
