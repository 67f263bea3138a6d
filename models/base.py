"""The one contract every detector implements, and the base class that implements its
lifecycle once (after MLServer's ``MLModel``).

Lifecycle: construct (cheap) → ``await load()`` (heavy, off the event loop) → many
``predict_batch`` calls (synchronous; the worker runs them in its inference thread) →
``await unload()``. ``ready`` is true only between a successful load and unload.

A detector subclasses :class:`BaseDetector` and writes only what is its own: reading its
weights (:meth:`BaseDetector.read_model`), scoring a non-empty batch
(:meth:`BaseDetector.predict`) and dropping its weights (:meth:`BaseDetector.release_model`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from deepfake_stream.core.errors import ModelError, ModelUnavailable

T = TypeVar("T")


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
    calibrated_numerics: str | None = None
    """The numerics its operating points were calibrated with (``calibration.numerics``,
    written by ``calibrate`` for detectors whose scores depend on the CPU's kernels)."""


@runtime_checkable
class Detector(Protocol):
    spec: DetectorSpec
    numerics: str | None
    """What its scores depend on beyond its artifact (e.g. the machine's int8 kernels), once
    loaded; None: nothing known, a score is the same on any machine. ``calibrate`` records
    it next to the thresholds, because they hold only where the scores do."""

    @property
    def ready(self) -> bool:
        """Loaded and able to score (read-only here: a remote detector computes it)."""
        ...

    @property
    def version(self) -> str:
        """``<release>+sha256:<first 12 hex of the artifact manifest>``."""
        ...

    async def load(self) -> None: ...

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        """Score texts, in order; raise on failure (the worker isolates the culprit)."""
        ...

    async def unload(self) -> None: ...


class BaseDetector:
    """The :class:`Detector` lifecycle, once: ``ready``, ``version``, loading off the event
    loop, the not-loaded and empty-batch cases, the finite-score check and unloading.

    Subclasses implement :meth:`read_model` and :meth:`predict`, and :meth:`release_model`
    when they hold weights; a detector whose load is itself asynchronous (the ensemble
    acquires its members) overrides :meth:`load_model` and :meth:`unload_model` instead.
    """

    numerics: str | None = None
    """What its scores depend on beyond its artifact (the int8 kernels of the machine), once
    loaded; None: nothing, a score is the same on any machine."""

    def __init__(self, spec: DetectorSpec) -> None:
        self.spec = spec
        self.ready = False
        self._version = spec.version

    @property
    def version(self) -> str:
        """The registry's release until loaded, then ``<release>+sha256:<artifact hash>``."""
        return self._version

    def metadata(self) -> dict[str, Any]:
        """What the detector is, loaded or not (MLServer's ``metadata()``)."""
        return {
            "model_id": self.spec.model_id,
            "kind": self.spec.kind,
            "version": self.version,
            "device": self.spec.device,
            "ready": self.ready,
            **({"numerics": self.numerics} if self.numerics else {}),
        }

    async def load(self) -> None:
        self._version = await self.load_model()
        self.ready = True

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        if not self.ready:
            raise ModelUnavailable(f"{self.spec.model_id} is not loaded")
        if not texts:
            return []
        scores = self.predict(texts)
        if not all(math.isfinite(s.score) for s in scores):
            raise ModelError(f"{self.spec.model_id}: non-finite score")
        return scores

    async def unload(self) -> None:
        self.ready = False
        await self.unload_model()

    # --- what a detector writes -------------------------------------------------------------

    async def load_model(self) -> str:
        """Load the weights; returns the loaded version. Runs :meth:`read_model` in a thread:
        reading and verifying artifacts is blocking work."""
        return await asyncio.to_thread(self.read_model)

    def read_model(self) -> str:
        """Read and verify the artifact and keep what :meth:`predict` needs; returns the
        versioned name (``manifest.versioned(spec.version)``)."""
        raise NotImplementedError

    def predict(self, texts: Sequence[str]) -> list[Score]:
        """One score per text, in order, for a non-empty batch of a loaded detector."""
        raise NotImplementedError

    async def unload_model(self) -> None:
        self.release_model()

    def release_model(self) -> None:
        """Drop the weights so they can be freed (nothing to drop by default)."""

    def loaded(self, value: T | None) -> T:
        """``value``, which :meth:`read_model` set; raises when the detector is unloaded."""
        if value is None:
            raise ModelUnavailable(f"{self.spec.model_id} is not loaded")
        return value
