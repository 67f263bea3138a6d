"""The model registry: model id → how it is built and where it runs, from one YAML file."""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepfake_stream.core.errors import ConfigError, UnknownModel
from deepfake_stream.core.settings import ModelSettings, Settings
from deepfake_stream.models.base import DetectorSpec
from deepfake_stream.models.operating_points import ConfidenceBands, OperatingPoint
from deepfake_stream.schemas.items import BackendName

Size = Literal["tiny", "small", "medium", "large"]
DEFAULT_REGISTRY = Path(__file__).with_name("registry.yaml")
RETIRED_REGISTRY = DEFAULT_REGISTRY.with_name("retired.yaml")
"""Entries of retired models, as they were served: for studies and tests, never served."""

# Size decides the default target: the bigger the model, the more it wants a GPU.
SIZE_CHAINS: dict[str, tuple[BackendName, ...]] = {
    "tiny": ("cpu",),
    "small": ("gpu", "cpu"),
    "medium": ("gpu", "cpu"),
    "large": ("modal", "gpu", "cpu"),
}


class ModelEntry(BaseModel):
    """One entry of models/registry.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    size: Size
    version: str
    artifact: str | None = None
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    backends: list[BackendName] | None = None
    max_batch_size: int | None = Field(None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)
    # Written by `deepfake-stream calibrate` (models/operating_points.py): the documented
    # operating points replace `threshold`; the default one gives the model's threshold.
    operating_points: dict[str, OperatingPoint] | None = None
    default_operating_point: str | None = None
    confidence: ConfidenceBands | None = None
    calibration: dict[str, Any] | None = None
    """Provenance of the figures above: data (files, split, n), date, command."""
    languages: list[str] | None = None
    """ISO 639-1 codes the model was fitted on; null: any (no ``unsupported_language``)."""
    min_words: int = Field(50, ge=0)
    """Below this many words the model's quality falls off (measured by ``calibrate``; see
    the model card): shorter texts get ``confidence: low`` and reason ``too_short``."""
    window_chars: int = Field(4000, ge=100)
    """Characters the model reads at once: longer texts are scored over windows this long
    (chosen from the model's token limit)."""
    max_windows: int | None = Field(None, ge=1)
    """Most windows per text for this model (default: the MAX_WINDOWS setting); the lower of
    the two applies."""


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    model_id: str
    kind: str
    size: Size
    version: str
    artifact: str | None
    threshold: float
    chain: tuple[BackendName, ...]
    """Preferred backend first, then fallbacks."""
    max_batch_size: int | None
    options: dict[str, Any] = field(default_factory=dict)
    languages: tuple[str, ...] | None = None
    """ISO 639-1 codes the model supports; None: any."""
    min_words: int = 50
    window_chars: int = 4000
    max_windows: int | None = None
    members: tuple[ModelConfig, ...] = ()
    """Composite models (``options.members``): the member entries of this same registry."""
    operating_points: dict[str, OperatingPoint] = field(default_factory=dict)
    default_operating_point: str | None = None
    confidence: ConfidenceBands | None = None
    calibration: dict[str, Any] | None = None

    def window_limit(self, max_windows: int) -> int:
        """Most windows one text is scored in: the ``MAX_WINDOWS`` setting, or the model's own
        ``max_windows`` where that is lower."""
        return min(max_windows, self.max_windows or max_windows)

    def supports(self, language: str | None) -> bool:
        """Whether the model was fitted on ``language`` (unknown language: yes)."""
        return language is None or self.languages is None or language in self.languages

    def spec(self, device: str = "cpu") -> DetectorSpec:
        return DetectorSpec(
            model_id=self.model_id,
            kind=self.kind,
            version=self.version,
            artifact=self.artifact,
            device=device,
            options=dict(self.options),
            members=tuple(m.spec(device) for m in self.members),
            calibrated_numerics=(self.calibration or {}).get("numerics"),
        )


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelConfig]
    default_model: str

    def resolve(self, model_id: str | None) -> ModelConfig:
        key = model_id or self.default_model
        try:
            return self.models[key]
        except KeyError:
            retired = (
                " (it was retired: models/retired.yaml says why, and holds its entry to copy "
                "into MODELS_CONFIG to serve it again)"
                if key in retired_ids()
                else ""
            )
            raise UnknownModel(
                f"model {key!r} is not registered{retired}; registered: {sorted(self.models)}"
            ) from None

    def for_backend(self, backend: BackendName) -> list[ModelConfig]:
        return [m for m in self.models.values() if backend in m.chain]


def registry_from_dict(doc: dict[str, Any], *, default_model: str, source: str) -> Registry:
    models: dict[str, ModelConfig] = {}
    for model_id, raw in (doc.get("models") or {}).items():
        try:
            entry = ModelEntry.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{source}: model {model_id!r}: {exc}") from None
        chain = tuple(SIZE_CHAINS[entry.size] if entry.backends is None else entry.backends)
        if len(set(chain)) != len(chain) or not chain:
            raise ConfigError(f"{source}: model {model_id!r}: backends must be non-empty, unique")
        threshold = _default_threshold(entry, f"{source}: model {model_id!r}")
        models[model_id] = ModelConfig(
            model_id=model_id,
            kind=entry.kind,
            size=entry.size,
            version=entry.version,
            artifact=entry.artifact,
            threshold=threshold,
            chain=chain,
            max_batch_size=entry.max_batch_size,
            options=entry.options,
            operating_points=dict(entry.operating_points or {}),
            default_operating_point=entry.default_operating_point,
            confidence=entry.confidence,
            calibration=entry.calibration,
            languages=None if entry.languages is None else tuple(entry.languages),
            min_words=entry.min_words,
            window_chars=entry.window_chars,
            max_windows=entry.max_windows,
        )
    models = {m: _with_members(c, models, source) for m, c in models.items()}
    if default_model not in models:
        raise ConfigError(
            f"{source}: default model {default_model!r} is not registered "
            f"(set MODELS_DEFAULT to one of {sorted(models)})"
        )
    return Registry(models=models, default_model=default_model)


def _default_threshold(entry: ModelEntry, where: str) -> float:
    """The threshold of the default operating point; one source of truth, so a calibrated
    entry may not also carry a hand-set ``threshold``."""
    points = entry.operating_points
    if not points:
        if entry.default_operating_point is not None:
            raise ConfigError(f"{where}: default_operating_point without operating_points")
        return entry.threshold
    if "threshold" in entry.model_fields_set:
        raise ConfigError(
            f"{where}: set either threshold or operating_points (the default one's threshold)"
        )
    if entry.default_operating_point not in points:
        raise ConfigError(
            f"{where}: default_operating_point must be one of {sorted(points)}, "
            f"got {entry.default_operating_point!r}"
        )
    return points[entry.default_operating_point].threshold


def _with_members(config: ModelConfig, models: dict[str, ModelConfig], source: str) -> ModelConfig:
    """Resolve ``options.members`` here, once, so a bad member fails at load, not mid-stream."""
    ids = config.options.get("members")
    if ids is None:
        return config
    if not isinstance(ids, list) or not ids or not all(isinstance(m, str) for m in ids):
        raise ConfigError(
            f"{source}: model {config.model_id!r}: options.members must be a non-empty list "
            "of registered model ids"
        )
    members = []
    for member_id in ids:
        member = models.get(member_id)
        if member is None:
            raise ConfigError(
                f"{source}: model {config.model_id!r}: member {member_id!r} is not registered; "
                f"registered: {sorted(models)}"
            )
        if "members" in member.options:
            raise ConfigError(
                f"{source}: model {config.model_id!r}: member {member_id!r} is itself an ensemble"
            )
        members.append(member)
    return replace(config, members=tuple(members))


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"model registry {path} not found (set MODELS_CONFIG)") from None
    return doc or {}


def load_registry(path: Path | None = None, *, default_model: str | None = None) -> Registry:
    """The registry at ``path`` (the shipped one by default); ``default_model``: the model of
    items whose model_id is null (default: the ``MODELS_DEFAULT`` setting)."""
    path = path or DEFAULT_REGISTRY
    return registry_from_dict(
        _read(path), default_model=default_model or ModelSettings().default, source=str(path)
    )


@functools.cache
def retired_ids() -> tuple[str, ...]:
    """The models of :data:`RETIRED_REGISTRY`: never served, still loadable for studies."""
    return tuple(_read(RETIRED_REGISTRY).get("models") or {})


def with_retired(
    path: Path | None = None, *, only: Collection[str] | None = None
) -> dict[str, Any]:
    """The registry document at ``path`` (the shipped one by default) plus the retired entries
    (:data:`RETIRED_REGISTRY`; those in ``only``, if given) that it does not define itself."""
    doc = _read(path or DEFAULT_REGISTRY)
    models = dict(doc.get("models") or {})
    retired = _read(RETIRED_REGISTRY).get("models") or {}
    wanted = set(retired if only is None else only)
    for model_id in list(wanted):  # a retired ensemble's members (never ensembles themselves)
        wanted.update((retired.get(model_id) or {}).get("options", {}).get("members") or [])
    for model_id, entry in retired.items():
        if model_id in wanted:
            models.setdefault(model_id, entry)
    return {**doc, "models": models}


def load_with_retired(
    path: Path | None = None,
    *,
    only: Collection[str] | None = None,
    default_model: str | None = None,
) -> Registry:
    """:func:`load_registry` plus the retired models' entries, so a study can score a retired
    model beside the ones that replaced it, and ``bench`` can measure one (bench/run.py)."""
    path = path or DEFAULT_REGISTRY
    return registry_from_dict(
        with_retired(path, only=only),
        default_model=default_model or ModelSettings().default,
        source=f"{path} + {RETIRED_REGISTRY.name}",
    )


def registry_for(settings: Settings) -> Registry:
    """The registry a service runs with: ``MODELS_CONFIG``, with ``MODELS_DEFAULT`` as default."""
    return load_registry(settings.models.config, default_model=settings.models.default)
