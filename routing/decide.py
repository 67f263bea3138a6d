"""The routing decision, as a pure function so every rule is unit-tested without a broker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from routing.registry import ModelConfig
from schemas.items import BackendName


@dataclass(frozen=True)
class Route:
    target: BackendName
    chain: tuple[BackendName, ...]
    """Fallbacks left after ``target``, in order."""


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
