"""Detector kinds: a registry entry's ``kind`` to the one module that declares it.

A kind is one module with a module-level ``KIND = DetectorKind(...)``: its detector class,
its trainer, and optionally its portable (browser) form and how the ensemble trainer scores
it as a member. Everything that dispatches on a kind (building detectors, ``train``, the
ensemble's trainer, the shim's model download, ``deepfake-stream models``) reads that
declaration; there is no other table to edit.

Where the module is found, from the registry's ``kind``:

- a plain name (``tfidf``) is a module of :mod:`deepfake_stream.models.detectors`;
- a dotted path (``my_package.my_detector``) is any importable module, so a kind can live
  outside this package; its ``KIND.name`` is that same path.

Trainers and member scorers are ``"module:attribute"`` strings, imported only when used, so a
worker that only serves never imports scikit-learn's training code, and a CPU worker that
never loads SmolLM2 never imports transformers. Tests add their doubles with
:func:`register_kind`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deepfake_stream.core.errors import ConfigError
from deepfake_stream.models.base import Detector, DetectorSpec

BUILTIN_PACKAGE = "deepfake_stream.models.detectors"


@dataclass(frozen=True, kw_only=True)
class Portable:
    """A kind whose artifact file already is a form a browser can score."""

    file: str
    """The artifact file served as is (``GET /v1/models/{id}/download``)."""
    check: Callable[[Any], object] | None = None
    """Called with the parsed file; raises when the reference scorer cannot read it, so a
    model that cannot be scored is never published."""


@dataclass(frozen=True, kw_only=True)
class DetectorKind:
    """One detector kind, declared once, in its own module, as ``KIND``."""

    name: str
    """What the registry's ``kind`` says."""
    detector: Callable[[DetectorSpec], Detector]
    """Builds an unloaded detector from its spec (usually the class)."""
    trainer: str | None = None
    """``"module:function"`` of its trainer
    (:class:`deepfake_stream.models.training.Trainer`); None: not trainable here."""
    portable: Portable | None = None
    """Its browser form, when it has one."""
    member_scorer: str | None = None
    """``"module:function"`` taking the artifact's head JSON and the registry options and
    returning a batch scorer: how the ensemble trainer scores this kind as a member from cached
    features. None: the ensemble trainer loads the detector and calls ``predict_batch``."""
    package_weights: str | None = None
    """``"module:function"`` returning the path (file or folder) of the pretrained weights
    the detector reads from an installed package, which its artifact does not count; for
    ``deepfake-stream models``."""


_REGISTERED: dict[str, DetectorKind] = {}


def register_kind(
    name: str, factory: Callable[[DetectorSpec], Detector] | DetectorKind
) -> DetectorKind:
    """Add (or replace) a kind without a module of its own: test doubles, mostly."""
    kind = (
        factory if isinstance(factory, DetectorKind) else DetectorKind(name=name, detector=factory)
    )
    _REGISTERED[name] = kind
    return kind


def _module_name(name: str) -> str:
    return name if "." in name else f"{BUILTIN_PACKAGE}.{name}"


def builtin_kinds() -> list[str]:
    """The modules of :mod:`deepfake_stream.models.detectors` (found without importing them)."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.ispkg)


def known_kinds() -> list[str]:
    return sorted({*builtin_kinds(), *_REGISTERED})


def get_kind(name: str) -> DetectorKind:
    """The declaration of kind ``name``; :class:`ConfigError` when there is none."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    module_name = _module_name(name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the kind's module exists but one of its own imports is missing
        raise ConfigError(f"unknown detector kind {name!r}; known: {known_kinds()}") from None
    kind = getattr(module, "KIND", None)
    if not isinstance(kind, DetectorKind) or kind.name != name:
        raise ConfigError(
            f"module {module_name} declares no detector kind {name!r} "
            f"(it needs KIND = DetectorKind(name={name!r}, ...))"
        )
    return kind


def load_attribute(path: str) -> Any:
    """``"module:attribute"`` → the attribute (trainers, scorers: imported when used)."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_detector(spec: DetectorSpec) -> Detector:
    try:
        kind = get_kind(spec.kind)
    except ConfigError as exc:
        raise ConfigError(f"model {spec.model_id!r}: {exc}") from None
    return kind.detector(spec)
