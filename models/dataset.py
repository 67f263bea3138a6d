"""Labelled JSONL for training and evaluation, and a leak-free train/test split.

One JSON object per line: ``text`` (non-empty string) and ``label`` (0 = human, 1 = AI) are
required; ``id``, ``topic`` and ``language`` are optional; every other field is kept in
:attr:`Example.fields` (for ``evaluate --by FIELD``). Blank lines are skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_stream.core.errors import DetectError

DEFAULT_SEED = 20261122
"""The seed of every published number: change it and the held-out split changes."""


class DatasetError(DetectError):
    """A labelled file is missing or malformed; the message names the file and line."""

    reason = "invalid_schema"


@dataclass(frozen=True, kw_only=True)
class Example:
    text: str
    label: int
    """0 = human, 1 = AI-generated."""
    id: str | None = None
    topic: str | None = None
    language: str | None = None
    line: int = 0
    """1-based line in the source file (0 when built in code)."""
    fields: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The row's other fields (``domain``, ``generator``, ...), without ``text``."""

    @property
    def group(self) -> str:
        """What must never straddle the split: the topic (a human text and its AI rewrites
        share one), else the id, else the line."""
        if self.topic:
            return f"topic:{self.topic}"
        return f"id:{self.id}" if self.id else f"line:{self.line}"


def _optional_str(obj: dict, key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    if key == "id" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DatasetError(f"{where}: {key!r} must be a string, got {type(value).__name__}")


def load_labelled(path: str | os.PathLike[str]) -> list[Example]:
    """Read labelled JSONL; raise :class:`DatasetError` naming the first bad line."""
    path = Path(path)
    try:
        fh = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(
            f"labelled data {path} not found: give a JSONL file of "
            '{"text", "label"} lines (label 0 = human, 1 = AI); the corpus the README '
            "evaluates on (human_ai_corpus.jsonl) does not ship with the project, see the "
            "README's Quality section for where it is"
        ) from None
    examples: list[Example] = []
    with fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{where}: not valid JSON ({exc.args[0]})") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{where}: expected a JSON object")
            text, label = obj.get("text"), obj.get("label")
            if not isinstance(text, str) or not text.strip():
                raise DatasetError(f"{where}: 'text' must be a non-empty string")
            if isinstance(label, bool) or label not in (0, 1):
                raise DatasetError(f"{where}: 'label' must be 0 (human) or 1 (AI), got {label!r}")
            examples.append(
                Example(
                    text=text,
                    label=int(label),
                    id=_optional_str(obj, "id", where),
                    topic=_optional_str(obj, "topic", where),
                    language=_optional_str(obj, "language", where),
                    line=n,
                    fields={k: v for k, v in obj.items() if k != "text"},
                )
            )
    if not examples:
        raise DatasetError(f"{path} holds no examples")
    return examples


def split(
    examples: Sequence[Example], test_fraction: float = 0.2, seed: int = DEFAULT_SEED
) -> tuple[list[Example], list[Example]]:
    """Deterministic (train, test): stratified by label, grouped by :attr:`Example.group`.

    Uses the first fold of ``StratifiedGroupKFold(n_splits=round(1 / test_fraction))``, so
    the test share is about ``test_fraction`` (exactly 1/k for k folds) and no topic is on
    both sides. Both lists keep the input order."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, round(1.0 / test_fraction))
    groups = [e.group for e in examples]
    if len(set(groups)) < n_splits:
        raise DatasetError(
            f"need at least {n_splits} distinct topics/ids to hold out {test_fraction:.0%}, "
            f"got {len(set(groups))}"
        )
    labels = [e.label for e in examples]
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, test_idx = next(folds.split(list(range(len(examples))), labels, groups))
    return [examples[i] for i in sorted(train_idx)], [examples[i] for i in sorted(test_idx)]


def select(examples: Sequence[Example], which: str, *, seed: int = DEFAULT_SEED) -> list[Example]:
    """``all``, or the ``train`` / ``test`` side of :func:`split` with the default fraction."""
    if which == "all":
        return list(examples)
    train, test = split(examples, seed=seed)
    if which == "train":
        return train
    if which == "test":
        return test
    raise ValueError(f"split must be all, train or test, not {which!r}")
