"""Verdicts (``detect.verdicts``) and the rule that turns a score into a label."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deepfake_stream.schemas.items import BackendName

Label = Literal["ai", "human"]
Confidence = Literal["high", "medium", "low"]


def utc_now_iso() -> str:
    """ISO 8601 UTC with milliseconds and a Z, as the contract shows."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def label_for(score: float, threshold: float) -> Label:
    return "ai" if score >= threshold else "human"


class Span(BaseModel):
    """One scored window of the text (with ``detail: true``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: int = Field(ge=0)
    """Offset of the window's first character in the text as received."""
    end: int = Field(ge=0)
    """Offset one past its last character: ``text[start:end]`` is the window."""
    score: float = Field(ge=0.0, le=1.0)
    label: Label


class Revision(BaseModel):
    """The earlier verdict a re-score replaces."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_version: str
    scored_at: str


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    model_id: str
    model_version: str
    score: float = Field(ge=0.0, le=1.0)
    """Probability that the text is AI-generated (over windows: the highest window's)."""
    label: Label
    is_fake: bool
    threshold: float = Field(ge=0.0, le=1.0)
    """The threshold of ``operating_point``: chosen at a stated FPR on held-out human texts."""
    operating_point: str | None = None
    """The operating point that gave ``threshold`` (null: a model not yet calibrated)."""
    confidence: Confidence | None = None
    """Calibrated score band of the verdict; the README's model card states each band's
    measured precision; ``low`` whenever ``reasons`` is not empty. Null only on verdicts from
    before confidence existed."""
    reasons: list[str] = Field(default_factory=list)
    """Why the verdict is low-confidence: ``too_short``, ``unsupported_language:<code>``."""
    language: str | None = None
    """Detected language (ISO 639-1); null when no language could be detected."""
    evasion: list[str] = Field(default_factory=list)
    """Manipulations found and neutralised before scoring: ``zero_width``, ``bidi``,
    ``homoglyph``."""
    scored_chars: int | None = Field(None, ge=0)
    """Characters of the text that were scored (the whole text unless it needed more than
    MAX_WINDOWS windows)."""
    windows: int | None = Field(None, ge=1)
    """Windows the text was scored in."""
    spans: list[Span] | None = None
    """Each window's score, in offsets of the text as received (only with ``detail``)."""
    revises: Revision | None = None
    """Set by a replay whose label or confidence differs from the earlier verdict."""
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
        if self.label != label_for(self.score, self.threshold) or self.is_fake != (
            self.label == "ai"
        ):
            raise ValueError("label/is_fake must follow score >= threshold")
        return self

    @classmethod
    def from_score(
        cls,
        *,
        score: float,
        threshold: float,
        confidence: Confidence | None = None,
        reasons: list[str] | None = None,
        **fields: Any,
    ) -> Verdict:
        """The verdict-building rule: label and ``is_fake`` follow ``threshold`` (the
        operating point's); a verdict with a reason not to trust it is ``low`` whatever its
        score band says."""
        label = label_for(score, threshold)
        reasons = list(reasons or [])
        if reasons:
            confidence = "low"
        return cls(
            score=score,
            threshold=threshold,
            label=label,
            is_fake=label == "ai",
            confidence=confidence,
            reasons=reasons,
            **fields,
        )
