"""Safe artifact I/O: a directory of files that cannot execute code, plus a sha256 manifest.

An artifact is a directory (by default ``models/artifacts/<model-id>/``) holding JSON and
safetensors files and ``manifest.json``::

    {"model_id": "tiny-tfidf", "version": "2026.11.1", "created_at": "2026-11-22T10:30:45Z",
     "files": {"model.json": "<sha256>", "weights.safetensors": "<sha256>"},
     "metrics": {"auroc": 0.97, ...}}

Every file's sha256 is checked before anything parses it, so a tampered or truncated file
is refused with :class:`~deepfake_stream.core.errors.ArtifactIntegrityError` instead of being
half-loaded. The manifest's own digest is the model's identity: detectors report
``<release>+sha256:<first 12 hex of manifest_digest>`` as their version. Pickle, joblib and
torch's pickle-based formats are refused: loading them can run arbitrary code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_stream.core.errors import ArtifactIntegrityError

ARTIFACTS_ROOT = Path(__file__).with_name("artifacts")
"""Where named artifacts live; packaged with the wheel (``models/artifacts/*/*``)."""
MANIFEST = "manifest.json"
_RESERVED = {"model_id", "version", "files", "created_at", "metrics"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# Formats whose loaders can execute code (pickle underneath): never written, never read.
_UNSAFE_SUFFIXES = {".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt", ".npy", ".npz"}

FilePayload = bytes | Mapping[str, np.ndarray] | Any
"""bytes (written as is), a mapping of numpy arrays (``*.safetensors``), or any JSON value
(``*.json``)."""


def _fix_hint(model_id: str) -> str:
    return f"retrain it with `deepfake-stream train --model {model_id}`"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no white space): what the digest is taken over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def artifact_dir(name_or_path: str | os.PathLike[str]) -> Path:
    """A bare name (``tiny-tfidf``) is looked up under ``models/artifacts/``; anything with a
    path separator, ``~`` or a leading dot is taken as a path."""
    text = os.fspath(name_or_path)
    if os.sep in text or "/" in text or text.startswith((".", "~")):
        return Path(text).expanduser()
    return ARTIFACTS_ROOT / text


def _check_name(name: str) -> None:
    if not _SAFE_NAME.match(name) or name == MANIFEST:
        raise ValueError(f"artifact file name {name!r} must be a plain file name")
    if Path(name).suffix.lower() in _UNSAFE_SUFFIXES:
        raise ValueError(f"artifact file {name!r}: pickle-based formats are not allowed")


def _encode(name: str, payload: FilePayload) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if name.endswith(".safetensors"):
        from safetensors.numpy import save

        arrays = {k: np.ascontiguousarray(v) for k, v in payload.items()}
        return save(arrays)
    if name.endswith(".json"):
        return canonical_json(payload)
    raise ValueError(f"artifact file {name!r}: pass bytes, or name it *.json / *.safetensors")


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A verified artifact. Read its files through :meth:`read_json` / :meth:`read_arrays`,
    which re-check the bytes they parse, so nothing swapped after verification is used."""

    directory: Path
    model_id: str
    version: str
    """The release the artifact was trained as."""
    files: dict[str, str]
    created_at: str
    metrics: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    """The manifest exactly as stored (what :func:`manifest_digest` hashes)."""

    @property
    def digest(self) -> str:
        return manifest_digest(self)

    def versioned(self, release: str | None = None) -> str:
        """``<release>+sha256:<12 hex>``; ``release`` defaults to the manifest's own."""
        return f"{release or self.version}+sha256:{self.digest[:12]}"

    @property
    def size_bytes(self) -> int:
        return (
            sum((self.directory / n).stat().st_size for n in self.files)
            + (self.directory / MANIFEST).stat().st_size
        )

    def path(self, name: str) -> Path:
        if name not in self.files:
            raise KeyError(f"{name!r} is not listed in {self.directory / MANIFEST}")
        return self.directory / name

    def read_bytes(self, name: str) -> bytes:
        data = self.path(name).read_bytes()
        if sha256_bytes(data) != self.files[name]:
            raise ArtifactIntegrityError(
                f"artifact file {self.directory / name} changed after verification "
                f"(sha256 mismatch); {_fix_hint(self.model_id)}"
            )
        return data

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))

    def read_arrays(self, name: str) -> dict[str, np.ndarray]:
        from safetensors.numpy import load

        return load(self.read_bytes(name))


def manifest_digest(manifest: Manifest | Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the manifest (as stored), as 64 hex digits."""
    raw = manifest.raw if isinstance(manifest, Manifest) else manifest
    return sha256_bytes(canonical_json(dict(raw)))


def save_artifact(
    directory: str | os.PathLike[str],
    *,
    model_id: str,
    release: str,
    files: Mapping[str, FilePayload],
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Manifest:
    """Write ``files`` and their manifest, replacing any previous artifact atomically (a
    reader sees the old directory or the new one, never a mix). ``extra`` keys are stored
    at the top level of the manifest (e.g. ``kind``, ``training``)."""
    target = artifact_dir(directory)
    clash = _RESERVED & set(extra or {})
    if clash:
        raise ValueError(f"extra manifest keys {sorted(clash)} are reserved")
    if not files:
        raise ValueError("an artifact needs at least one file")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    digests: dict[str, str] = {}
    for name, payload in files.items():
        _check_name(name)
        data = _encode(name, payload)
        (tmp / name).write_bytes(data)
        digests[name] = sha256_bytes(data)
    doc: dict[str, Any] = {
        "model_id": model_id,
        "version": release,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": dict(sorted(digests.items())),
    }
    if metrics is not None:
        doc["metrics"] = dict(metrics)
    doc.update(extra or {})
    (tmp / MANIFEST).write_text(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return load_verified(target)


def load_verified(directory: str | os.PathLike[str]) -> Manifest:
    """Read ``manifest.json`` and check every listed file's sha256 before any is parsed.

    Raises :class:`ArtifactIntegrityError` naming the missing or mismatching file."""
    root = artifact_dir(directory)
    hint_id = root.name
    try:
        raw = json.loads((root / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise ArtifactIntegrityError(
            f"artifact {root} has no {MANIFEST} (missing or never trained); {_fix_hint(hint_id)}"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactIntegrityError(
            f"{root / MANIFEST} is not valid JSON ({exc}); {_fix_hint(hint_id)}"
        ) from None
    if not isinstance(raw, dict) or not {"model_id", "version", "files"} <= raw.keys():
        raise ArtifactIntegrityError(
            f"{root / MANIFEST} lacks model_id/version/files; {_fix_hint(hint_id)}"
        )
    model_id = str(raw["model_id"])
    files = raw["files"]
    if not isinstance(files, dict) or not files:
        raise ArtifactIntegrityError(f"{root / MANIFEST} lists no files; {_fix_hint(model_id)}")
    for name, expected in files.items():
        try:
            _check_name(name)
        except ValueError as exc:
            raise ArtifactIntegrityError(f"{root / MANIFEST}: {exc}") from None
        path = root / name
        if not path.is_file():
            raise ArtifactIntegrityError(f"artifact file {path} is missing; {_fix_hint(model_id)}")
        actual = _sha256_file(path)
        if actual != expected:
            raise ArtifactIntegrityError(
                f"artifact file {path} is corrupt or was modified: sha256 {actual[:12]}… "
                f"does not match the manifest's {str(expected)[:12]}…; {_fix_hint(model_id)}"
            )
    return Manifest(
        directory=root,
        model_id=model_id,
        version=str(raw["version"]),
        files=dict(files),
        created_at=str(raw.get("created_at", "")),
        metrics=raw.get("metrics"),
        extra={k: v for k, v in raw.items() if k not in _RESERVED},
        raw=raw,
    )
