"""The routing decision, as a pure function so every rule is unit-tested without a broker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deepfake_stream.models.registry import ModelConfig, Registry
from deepfake_stream.schemas.items import BackendName
from deepfake_stream.text import detect_language, normalise


@dataclass(frozen=True)
class Route:
    target: BackendName
    chain: tuple[BackendName, ...]
    """Fallbacks left after ``target``, in order."""


def choose_model(registry: Registry, model_id: str | None, text: str) -> ModelConfig:
    """The item's model: its own ``model_id``; when null, the default model, unless the
    default was not fitted on the text's language and another registered model was (one that
    lists the language before one that accepts any).

    The language is detected only when models differ in their languages: with one language
    set for all (the shipped registry) routing costs nothing more. Raises ``UnknownModel``.
    """
    if model_id is not None:
        return registry.resolve(model_id)
    default = registry.resolve(None)
    if all(m.languages == default.languages for m in registry.models.values()):
        return default
    language = detect_language(normalise(text).text)
    if language is None or (default.languages is not None and language in default.languages):
        return default
    listed = [m for m in registry.models.values() if m.languages and language in m.languages]
    any_language = [m for m in registry.models.values() if m.languages is None]
    return (listed or any_language or [default])[0]


def candidates(config: ModelConfig, prefer: BackendName | None) -> tuple[BackendName, ...]:
    """The model's chain with the item's preferred backend moved to the front.

    A preference for a backend outside the model's chain is ignored: no worker there loads
    this model.
    """
    if prefer and prefer in config.chain:
        return (prefer, *(b for b in config.chain if b != prefer))
    return config.chain


def choose_route(
    config: ModelConfig,
    prefer: BackendName | None,
    alive: Callable[[str, str], bool],
) -> Route | None:
    """First live backend in preference order, or None when no backend is live.

    Backends skipped because nobody consumes them are not "tried", so they do not appear in
    ``fallback_from``; the ones after the target stay in the chain (they may come back).
    """
    order = candidates(config, prefer)
    for i, backend in enumerate(order):
        if alive(backend, config.model_id):
            return Route(target=backend, chain=order[i + 1 :])
    return None
