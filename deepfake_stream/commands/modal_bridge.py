"""Consume detect.backend.modal in micro-batches and score them on the deployed Modal app
(MODAL_APP_NAME, deployed from deploy/modal/app.py), publishing verdicts to detect.verdicts.

It is the ordinary worker loop (micro-batches, commit after acks, fallback, heartbeats) with
one remote detector per model whose backend chain contains `modal`. Each micro-batch is split
into calls of at most MODAL_MAX_BATCH texts, at most MODAL_MAX_INFLIGHT at once, under one
MODAL_TIMEOUT_S deadline. When Modal is unreachable, unauthenticated, or fails
MODAL_BREAKER_FAILURES batches in a row, the bridge stops advertising its models (the router
then skips Modal) and hands what is already on its topic to the next backend at once; it
tries Modal again every MODAL_BREAKER_COOLDOWN_S. Needs Modal credentials (`modal token new`
or MODAL_TOKEN_ID / MODAL_TOKEN_SECRET); see deploy/modal/README.md."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from deepfake_stream.commands._run import add_bounded_run, run_until_signalled
from deepfake_stream.core.settings import Settings

if TYPE_CHECKING:  # imported where used: a command loads only what it runs
    from deepfake_stream.models.base import Detector
    from deepfake_stream.models.registry import Registry

HELP = "score the Modal backend topic on the deployed Modal app"
SETTINGS = (
    "kafka",
    "topics",
    "redis",
    "limits",
    "worker",
    "modal",
    "models",
    "metrics",
    "telemetry",
)
EXAMPLES = """\
  deepfake-stream modal-bridge
  deepfake-stream modal-bridge --modal-app-name deepfake-stream --modal-timeout-s 60
  deepfake-stream modal-bridge --modal-max-inflight 8 --metrics-port 9102
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bounded_run(parser)


def modal_detectors(settings: Settings, registry: Registry | None = None) -> dict[str, Detector]:
    """One ModalDetector per registered model whose chain contains ``modal``."""
    from deepfake_stream.models.modal_detector import ModalDetector
    from deepfake_stream.models.registry import registry_for

    registry = registry or registry_for(settings)
    only = set(settings.models.only.split(",")) if settings.models.only else None
    return {
        config.model_id: ModalDetector(config.spec("remote"), settings.modal)
        for config in registry.for_backend("modal")
        if not only or config.model_id in only
    }


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.consumers.service import serve_worker
    from deepfake_stream.core.errors import ConfigError
    from deepfake_stream.models.registry import registry_for

    registry = registry_for(settings)
    detectors = modal_detectors(settings, registry)
    if not detectors:
        raise ConfigError(
            "no registered model has `modal` in its backend chain (models/registry.yaml: size "
            "large, or `backends: [modal, ...]`); the Modal bridge has nothing to serve"
        )
    return run_until_signalled(
        lambda stop: serve_worker(
            settings,
            "modal",
            registry=registry,
            detectors=detectors,
            stop=stop,
            count=args.count,
            timeout=args.timeout,
        )
    )
