"""List the registered models: id, version, size, backend chain and status.

The version carries the artifact's manifest hash when the artifact verifies (every file's
sha256 checked); otherwise the status says the artifact is missing or corrupt and how to
rebuild it. Each model is loaded, as a worker would, to check it works; --no-load only
verifies artifacts (fast, and no large model is read). Exit status 1 when any model
is unavailable, so it doubles as a health check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from deepfake_stream.core.errors import ArtifactIntegrityError
from deepfake_stream.core.settings import Settings
from deepfake_stream.models.artifacts import artifact_dir, load_verified
from deepfake_stream.models.kinds import build_detector, get_kind, load_attribute
from deepfake_stream.models.registry import ModelConfig, load_registry

HELP = "list registered models: id, version, size, backends, status"
SETTINGS = ("models",)
EXAMPLES = """\
  deepfake-stream models
  deepfake-stream models --no-load --json
  deepfake-stream models --models-config my-registry.yaml
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-load", action="store_true", help="only verify the artifacts")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object ({'models': [...]}), last"
    )


async def _try_load(config: ModelConfig) -> tuple[str, str | None, float]:
    detector = build_detector(config.spec())
    t0 = time.perf_counter()
    try:
        await detector.load()
        return "ready", detector.version, (time.perf_counter() - t0) * 1000
    except Exception as exc:  # any load failure is a status to show, not a crash
        return f"unavailable: {type(exc).__name__}: {exc}", None, 0.0
    finally:
        await detector.unload()


def _describe(config: ModelConfig, load: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": config.model_id,
        "kind": config.kind,
        "version": config.version,
        "size": config.size,
        "artifact_bytes": None,
        "weights_bytes": _weights_bytes(config),
        "backends": list(config.chain),
        "status": "ok",
        "load_ms": None,
    }
    if config.artifact:
        try:
            manifest = load_verified(artifact_dir(config.artifact))
            row["version"] = manifest.versioned(config.version)
            row["artifact_bytes"] = manifest.size_bytes
        except ArtifactIntegrityError as exc:
            row["status"] = f"artifact missing/corrupt: {exc}"
            return row
    if load:
        status, version, ms = asyncio.run(_try_load(config))
        row["status"] = status
        row["version"] = version or row["version"]
        row["load_ms"] = round(ms, 1) if version else None
    return row


def _weights_bytes(config: ModelConfig) -> int:
    """Bytes of the pretrained weights a model reads from an installed package (SmolLM2's
    GGUF, MiniLM's safetensors), which its own artifact (a small head) does not count; an
    ensemble counts its members'. 0 when the package is missing (the status says so)."""
    from deepfake_stream.core.errors import ConfigError, ModelUnavailable

    try:
        weights = get_kind(config.kind).package_weights
    except ConfigError:  # an unknown kind: the status column says so
        weights = None
    try:
        if weights is not None:
            path = load_attribute(weights)()
            files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
            return sum(f.stat().st_size for f in files)
    except ModelUnavailable:
        return 0
    return sum(_weights_bytes(m) for m in config.members)


def _size(row: dict[str, Any]) -> str:
    """The size class and the bytes a worker reads: artifact plus package weights."""
    total = (row["artifact_bytes"] or 0) + row["weights_bytes"]
    if not total:
        return row["size"]
    return f"{row['size']} ({total / 1e6:.1f} MB)"


def run(args: argparse.Namespace, settings: Settings) -> int:
    registry = load_registry(settings.models.config, default_model=settings.models.default)
    rows = [_describe(c, not args.no_load) for c in registry.models.values()]
    table = [("ID", "VERSION", "SIZE", "BACKENDS", "LOAD", "STATUS")]
    for r in rows:
        load = f"{r['load_ms']:.0f} ms" if r["load_ms"] is not None else "-"
        default = " (default)" if r["id"] == registry.default_model else ""
        table.append(
            (
                r["id"] + default,
                r["version"],
                _size(r),
                " > ".join(r["backends"]),
                load,
                r["status"],
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    if args.json:
        print(json.dumps({"default": registry.default_model, "models": rows}, sort_keys=True))
    return 0 if all(r["status"] in ("ok", "ready") for r in rows) else 1
