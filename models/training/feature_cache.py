"""A training-time cache of extracted features, so re-training never re-runs a model.

Features are keyed by the sha256 of the text and stored per extractor configuration (model
file digest, truncation limits, ...) as safetensors shards under
``$DEEPFAKE_STREAM_CACHE/features/<config hash>/``. Serving never reads this cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from deepfake_stream.models.smollm import cache_root

Extractor = Callable[[Sequence[str]], dict[str, np.ndarray]]
"""texts → named arrays with one row per text."""


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class FeatureCache:
    def __init__(self, config: dict[str, Any], root: str | Path | None = None) -> None:
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = cache_root(root) / "features" / digest
        self._rows: dict[str, dict[str, np.ndarray]] | None = None
        self.config = config

    def _load(self) -> dict[str, dict[str, np.ndarray]]:
        if self._rows is None:
            from safetensors.numpy import load_file

            self._rows = {}
            for shard in sorted(self.dir.glob("*.safetensors")):
                for name, arr in load_file(shard).items():
                    key, _, field = name.partition("/")
                    self._rows.setdefault(key, {})[field] = arr
        return self._rows

    def put(self, texts: Sequence[str], arrays: dict[str, np.ndarray]) -> None:
        from safetensors.numpy import save_file

        rows = self._load()
        tensors = {}
        for i, text in enumerate(texts):
            key = text_key(text)
            rows[key] = {f: np.ascontiguousarray(a[i]) for f, a in arrays.items()}
            tensors.update({f"{key}/{f}": v for f, v in rows[key].items()})
        if tensors:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "config.json").write_text(json.dumps(self.config, sort_keys=True))
            tmp = self.dir / f".{os.getpid()}-{time.time_ns()}.tmp"
            save_file(tensors, str(tmp))
            tmp.rename(self.dir / f"{time.time_ns()}-{os.getpid()}.safetensors")

    def get(
        self,
        texts: Sequence[str],
        extract: Extractor,
        *,
        batch_size: int = 64,
        progress: bool = False,
        desc: str = "features",
    ) -> dict[str, np.ndarray]:
        """Arrays for ``texts`` (in order), extracting only what the cache lacks."""
        rows = self._load()
        missing = list(dict.fromkeys(t for t in texts if text_key(t) not in rows))
        with tqdm(total=len(missing), desc=desc, unit="text", disable=not progress) as bar:
            for start in range(0, len(missing), batch_size):
                batch = missing[start : start + batch_size]
                self.put(batch, extract(batch))
                bar.update(len(batch))
        picked = [rows[text_key(t)] for t in texts]
        fields = picked[0].keys() if picked else []
        return {f: np.stack([r[f] for r in picked]) for f in fields}
