"""Train a registered model from labelled JSONL and write its safe artifact.

Training code, apart from serving code: one module per trainable kind
(:mod:`deepfake_stream.models.training.tfidf`, ...), and here what they share. Training
dispatches on the model's ``kind`` through the trainer its ``KIND`` declares
(:class:`deepfake_stream.models.kinds.DetectorKind`, imported only when used). Every trainer
sees only the train side of :func:`deepfake_stream.models.dataset.split`; the held-out side is
scored here, by the exported model, and its metrics go into the manifest.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from deepfake_stream.core.errors import ConfigError
from deepfake_stream.models.artifacts import artifact_dir, save_artifact
from deepfake_stream.models.dataset import DEFAULT_SEED, Example, load_labelled, split
from deepfake_stream.models.kinds import get_kind, load_attribute
from deepfake_stream.models.metrics import binary_metrics

if TYPE_CHECKING:
    from deepfake_stream.models.registry import Registry

TEST_FRACTION = 0.2


@dataclass(kw_only=True)
class TrainedModel:
    """What a trainer hands back: the artifact's files and a scorer of the exported model."""

    files: dict[str, Any]
    """Artifact files: bytes, JSON values (``*.json``) or arrays (``*.safetensors``)."""
    scorer: Callable[[Sequence[str]], np.ndarray]
    """P(AI) per text, computed from the exported files (not the training objects)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Manifest keys to add (``kind``, ``training``: hyper-parameters, CV results)."""


class Trainer(Protocol):
    """Trains one kind. Composite kinds (registry entries with ``members``) are also given
    ``registry=``, the registry their members are resolved in."""

    def __call__(
        self, examples: Sequence[Example], *, options: dict[str, Any], seed: int, progress: bool
    ) -> TrainedModel: ...


def trainer_for(model_id: str, kind: str) -> Trainer:
    """The trainer that kind ``kind`` declares (``KIND.trainer``), imported now."""
    trainer = get_kind(kind).trainer
    if trainer is None:
        raise ConfigError(
            f"model {model_id!r} (kind {kind!r}) is not trainable here: its KIND declares no "
            "trainer"
        )
    return load_attribute(trainer)


def score_texts(
    scorer: Callable[[Sequence[str]], Any],
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    progress: bool = True,
    desc: str = "scoring",
) -> tuple[np.ndarray, float]:
    """Scores in batches with a progress bar; returns (scores, texts per second)."""
    out: list[float] = []
    busy = 0.0
    with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            t0 = time.perf_counter()
            out.extend(float(s) for s in scorer(batch))
            busy += time.perf_counter() - t0
            bar.update(len(batch))
    return np.asarray(out), (len(texts) / busy if busy > 0 else 0.0)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def train(
    model_id: str,
    data_path: str | os.PathLike[str],
    *,
    registry: Registry,
    out_dir: str | os.PathLike[str] | None = None,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model_id`` on the train split, score the held-out split, write the artifact.

    Returns the model id, its new version, the artifact path and size, split sizes and the
    held-out metrics (also stored in the manifest)."""
    config = registry.resolve(model_id)
    trainer = trainer_for(config.model_id, config.kind)
    data_path = Path(data_path)
    train_set, test_set = split(load_labelled(data_path), TEST_FRACTION, seed)
    composite: dict[str, Any] = {"registry": registry} if config.members else {}
    trained = trainer(
        train_set, options=dict(config.options), seed=seed, progress=progress, **composite
    )
    scores, per_s = score_texts(
        trained.scorer, [e.text for e in test_set], progress=progress, desc="held-out"
    )
    metrics = binary_metrics([e.label for e in test_set], scores, config.threshold)
    metrics["texts_per_s"] = round(per_s, 1)
    target = Path(out_dir) if out_dir else artifact_dir(config.artifact or config.model_id)
    manifest = save_artifact(
        target,
        model_id=config.model_id,
        release=config.version,
        files=trained.files,
        metrics=metrics,
        extra={
            **trained.extra,
            "data": {
                "file": data_path.name,
                "sha256": _file_sha256(data_path),
                "n_train": len(train_set),
                "n_test": len(test_set),
                "split": {"test_fraction": TEST_FRACTION, "seed": seed, "grouped_by": "topic"},
            },
        },
    )
    return {
        "model_id": config.model_id,
        "model_version": manifest.versioned(config.version),
        "artifact": str(manifest.directory),
        "size_bytes": manifest.size_bytes,
        "n_train": len(train_set),
        "n_test": len(test_set),
        "metrics": metrics,
        "training": trained.extra.get("training", {}),
    }
