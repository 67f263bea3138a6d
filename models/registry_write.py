"""Write calibrated fields into models/registry.yaml without losing its comments.

PyYAML cannot round-trip comments, so the file is edited as text: inside one model's entry,
the keys ``calibrate`` owns (and the hand-set ``threshold`` they replace) are removed and the
new ones appended as a block. The result is validated as a registry before it is written.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from deepfake_stream.core.errors import ConfigError

OWNED_KEYS = (
    "threshold",
    "default_operating_point",
    "operating_points",
    "confidence",
    "min_words",
    "calibration",
)
_MARK = "    # Measured by `deepfake-stream calibrate`; re-run it rather than editing by hand."


def _entry_bounds(lines: list[str], model_id: str) -> tuple[int, int]:
    start = next(
        (i for i, line in enumerate(lines) if re.match(rf"^  {re.escape(model_id)}:\s*$", line)),
        None,
    )
    if start is None:
        raise ConfigError(
            f"model {model_id!r} has no block entry (`  {model_id}:`) in the registry"
        )
    end = start + 1
    while end < len(lines):
        line = lines[end]
        # The entry ends at the next line indented two spaces or less (comments included:
        # a comment at two spaces introduces the next model).
        if line.strip() and len(line) - len(line.lstrip()) <= 2:
            break
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start, end


def _without_owned(body: list[str]) -> list[str]:
    out, skipping = [], False
    for line in body:
        indent = len(line) - len(line.lstrip())
        if line.rstrip() == _MARK:
            continue
        if indent == 4 and line.strip() and not line.lstrip().startswith("#"):
            key = line.strip().split(":", 1)[0]
            skipping = key in OWNED_KEYS
        if not skipping:
            out.append(line)
    return out


def update_model(text: str, model_id: str, fields: dict[str, Any]) -> str:
    """``text`` (a registry.yaml) with ``fields`` as the calibrated keys of ``model_id``."""
    lines = text.splitlines()
    start, end = _entry_bounds(lines, model_id)
    block = yaml.safe_dump(fields, sort_keys=False, default_flow_style=None, width=100)
    new_body = [*_without_owned(lines[start + 1 : end]), _MARK]
    new_body += ["    " + line for line in block.splitlines()]
    return "\n".join([*lines[: start + 1], *new_body, *lines[end:]]) + "\n"


def write_model(path: Path, model_id: str, fields: dict[str, Any]) -> None:
    """Update ``path`` in place (re-read just before, replaced atomically), validated."""
    from deepfake_stream.models.registry import registry_from_dict

    text = update_model(path.read_text(), model_id, fields)
    doc = yaml.safe_load(text) or {}
    first = next(iter(doc.get("models") or {model_id: None}))
    registry_from_dict(doc, default_model=first, source=str(path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".models.", suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
