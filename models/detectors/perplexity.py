"""Zero-shot statistics from SmolLM2, calibrated by a small logistic head.

Per text: mean token log-likelihood, mean log-rank, mean predictive entropy and the
Fast-DetectGPT analytic criterion (Bao et al., ICLR 2024) with SmolLM2 as both scorer and
reference model. Scoring sorts a batch by token length, runs sub-batches of similar length,
and never materialises the full ``tokens x vocab`` tensor: the LM head is applied to chunks
of hidden states, each reduced to per-token statistics at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepfake_stream.models.base import BaseDetector, DetectorSpec, Score
from deepfake_stream.models.heads import LogisticHead, load_head
from deepfake_stream.models.kinds import DetectorKind

FEATURES = [
    "mean_log_likelihood",
    "mean_log_rank",
    "mean_entropy",
    "fast_detectgpt",
    "std_log_likelihood",
    "std_entropy",
    "top1_fraction",
    "top10_fraction",
]
"""The four statistics of the literature, then GLTR-style spread and rank-bucket ones."""
N_TOKEN_STATS = 8
HIDDEN_NAMES = [f"hidden.{i}" for i in range(576)]
"""SmolLM2's mean-pooled last hidden state, for heads trained with ``stats+hidden``."""


def head_inputs(features: np.ndarray, hidden: np.ndarray, feature_set: str) -> np.ndarray:
    """What the head reads: the statistics, or the statistics then the pooled hidden state."""
    if feature_set == "stats":
        return features
    if feature_set == "stats+hidden":
        return np.hstack([features, hidden.astype(np.float64)])
    raise ValueError(f"unknown feature set {feature_set!r}")


HEAD_FILE = "head.json"


class LMStatistics:
    """Truncate, tokenise and reduce texts to :data:`FEATURES` with a loaded causal LM."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_chars: int = 6000,
        max_tokens: int = 512,
        max_batch: int = 16,
        max_batch_tokens: int = 4096,
        vocab_chunk: int = 256,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_chars, self.max_tokens = int(max_chars), int(max_tokens)
        self.max_batch, self.max_batch_tokens = int(max_batch), int(max_batch_tokens)
        self.vocab_chunk = int(vocab_chunk)
        # The first token has no left context: condition it on the document separator.
        self.prefix_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_options(cls, model: Any, tokenizer: Any, options: dict[str, Any]) -> LMStatistics:
        keys = ("max_chars", "max_tokens", "max_batch", "max_batch_tokens", "vocab_chunk")
        return cls(model, tokenizer, **{k: options[k] for k in keys if k in options})

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Character limit first (cheap, bounds tokeniser work), then the token limit."""
        clipped = [t[: self.max_chars] for t in texts]
        ids = self.tokenizer(clipped, add_special_tokens=False)["input_ids"]
        return [[self.prefix_id, *row[: self.max_tokens]] for row in ids]

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), len(FEATURES))`` float64, in the input order."""
        return self.extract(texts)[0]

    def extract(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """:data:`FEATURES` and the mean-pooled last hidden state, in the input order."""
        import torch

        encoded = self.encode(texts)
        feats = np.zeros((len(texts), len(FEATURES)), dtype=np.float64)
        pooled = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        with torch.inference_mode():
            for batch in self._sub_batches(order, encoded):
                feats[batch], pooled[batch] = self._score([encoded[i] for i in batch])
        return feats, pooled

    def _sub_batches(self, order: list[int], encoded: list[list[int]]) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:  # ascending length: the last one added is the longest
            if current and (
                len(current) >= self.max_batch
                or len(encoded[i]) * (len(current) + 1) > self.max_batch_tokens
            ):
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def _score(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        device = self.model.device
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        ids, mask = ids.to(device), mask.to(device)
        hidden = self.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        valid = mask[:, 1:].bool()  # position t predicts token t + 1
        states = hidden[:, :-1][valid]
        targets = ids[:, 1:][valid]
        seq = torch.arange(len(rows), device=device)[:, None].expand_as(valid)[valid]
        per_token = (
            torch.cat(
                [
                    token_statistics(self.model.lm_head(states[s : s + self.vocab_chunk]), t)
                    for s, t in _chunks(targets, self.vocab_chunk)
                ]
            )
            if len(targets)
            else torch.zeros((0, N_TOKEN_STATS), dtype=torch.float64, device=device)
        )
        sums = torch.zeros((len(rows), N_TOKEN_STATS), dtype=torch.float64, device=device)
        sums.index_add_(0, seq, per_token)
        m = mask[:, :, None].to(hidden.dtype)
        pooled = (hidden * m).sum(1).float() / m.sum(1).float()
        n_tokens = (mask.sum(1) - 1).cpu().numpy()
        return reduce_statistics(sums.cpu().numpy(), n_tokens), pooled.cpu().numpy()


def _chunks(targets: Any, size: int) -> list[tuple[int, Any]]:
    return [(s, targets[s : s + size]) for s in range(0, len(targets), size)]


def token_statistics(logits: Any, targets: Any) -> Any:
    """Per token (float64 ``(n, 8)``): log-likelihood, log-rank, the mean and variance of the
    log-probability under the model's own predictive distribution (Fast-DetectGPT's
    analytic reference), the squares of log-likelihood and entropy, top-1 and top-10 hits."""
    import torch

    logp = logits.float().log_softmax(-1)
    ll = logp.gather(-1, targets[:, None]).squeeze(-1)
    rank = (logp > ll[:, None]).sum(-1) + 1
    p = logp.exp()
    mean_ref = (p * logp).sum(-1)  # = -entropy
    # Two passes, not E[x^2] - E[x]^2: that cancels badly in float32 for peaked or flat rows.
    var_ref = (p * (logp - mean_ref[:, None]).square()).sum(-1)
    ll, mean_ref = ll.double(), mean_ref.double()
    cols = (ll, rank.double().log(), mean_ref, var_ref.double(), ll.square(), mean_ref.square())
    return torch.stack([*cols, (rank == 1).double(), (rank <= 10).double()], dim=-1)


def reduce_statistics(sums: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
    """Summed per-token statistics → per-text :data:`FEATURES`. A text with no scored token
    (empty after truncation) gets zeros rather than NaN."""
    n = np.maximum(n_tokens.astype(np.float64), 1.0)
    ll, log_rank, mean_ref, var_ref, ll2, ent2, top1, top10 = sums.T
    fast = (ll - mean_ref) / np.sqrt(np.maximum(var_ref, 1e-12))
    std_ll = np.sqrt(np.maximum(ll2 / n - (ll / n) ** 2, 0.0))
    std_ent = np.sqrt(np.maximum(ent2 / n - (mean_ref / n) ** 2, 0.0))
    return np.stack(
        [ll / n, log_rank / n, -mean_ref / n, fast, std_ll, std_ent, top1 / n, top10 / n], axis=1
    )


class PerplexityDetector(BaseDetector):
    """Detector kind ``perplexity`` (registry options: ``max_chars``, ``max_tokens``,
    ``max_batch``, ``max_batch_tokens``, ``vocab_chunk``, ``num_threads``, ``cache_dir``)."""

    def __init__(self, spec: DetectorSpec) -> None:
        super().__init__(spec)
        self._stats: LMStatistics | None = None
        self._head: LogisticHead | None = None

    def read_model(self) -> str:
        from deepfake_stream.models.smollm import load_smollm

        loaded = load_head(self.spec, HEAD_FILE)
        lm = load_smollm(self.spec.device, cache_dir=loaded.options.get("cache_dir"))
        self._stats = LMStatistics.from_options(lm.model, lm.tokenizer, loaded.options)
        self._head = loaded.head
        return loaded.version

    def predict(self, texts: Sequence[str]) -> list[Score]:
        stats, head = self.loaded(self._stats), self.loaded(self._head)
        feats, hidden = stats.extract(texts)
        feature_set = head.extra.get("feature_set", "stats")
        probs = head.predict_proba(head_inputs(feats, hidden, feature_set))
        return [
            Score(
                score=float(p),
                details={k: round(float(v), 6) for k, v in zip(FEATURES, f, strict=True)},
            )
            for p, f in zip(probs, feats, strict=True)
        ]

    async def unload_model(self) -> None:
        self._stats = self._head = None
        await asyncio.to_thread(_release_memory)


def _release_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


KIND = DetectorKind(
    name="perplexity",
    detector=PerplexityDetector,
    trainer="deepfake_stream.models.training.perplexity:train",
    member_scorer="deepfake_stream.models.training.perplexity:cached_scorer",
    package_weights="deepfake_stream.models.smollm:gguf_path",
)

__all__ = ["FEATURES", "KIND", "LMStatistics", "PerplexityDetector"]
