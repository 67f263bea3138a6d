"""The one contract every detector implements (after MLServer's ``MLModel``).

Lifecycle: construct (cheap) → ``await load()`` (heavy, off the event loop) → many
``predict_batch`` calls (synchronous; the worker runs them in its inference thread) →
``await unload()``. ``ready`` is true only between a successful load and unload.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, kw_only=True)
class Score:
    score: float
    """Probability that the text is AI-generated, in [0, 1]."""
    details: dict[str, Any] = field(default_factory=dict)
    """Optional detector-specific features (e.g. perplexity), never required by consumers."""


@dataclass(frozen=True, kw_only=True)
class DetectorSpec:
    """What a detector is built from: one registry entry plus where it runs."""

    model_id: str
    kind: str
    version: str
    """Release version from the registry; the detector appends its artifact hash."""
    artifact: str | None = None
    """Artifact directory name under models/artifacts (or an absolute path)."""
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)
    """Kind-specific options from the registry (token limits, layers, ...)."""
    members: tuple[DetectorSpec, ...] = ()
    """For composite kinds (``options.members``): the members' specs, resolved in the same
    registry as this one, so ``--models-config`` governs the members too."""


@runtime_checkable
class Detector(Protocol):
    spec: DetectorSpec
    ready: bool

    @property
    def version(self) -> str:
        """``<release>+sha256:<first 12 hex of the artifact manifest>``."""
        ...

    async def load(self) -> None: ...

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        """Score texts, in order; raise on failure (the worker isolates the culprit)."""
        ...

    async def unload(self) -> None: ...
