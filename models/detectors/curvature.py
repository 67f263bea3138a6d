"""Predictability-normalised statistics from ONE SmolLM2 forward pass, calibrated by a small
logistic head (detector kind ``curvature``).

Raw perplexity says "AI" for any text that is easy to predict, so simple human writing
(student essays) scores as AI. Every feature here is normalised by how predictable the
model itself expected the text to be:

- Fast-DetectGPT's analytic curvature (Bao et al., ICLR 2024), SmolLM2 as both sampler and
  scorer: ``(log p(x) - sum_t E[log p]) / sqrt(sum_t Var[log p])``;
- a single-model Binoculars-like ratio (Hans et al., 2024): log-perplexity over the mean
  predictive entropy;
- both also per token window (``window`` tokens), aggregated (mean, min/max, spread), so a
  long text is judged by the consistency of its windows, not by its length.

The forward pass runs on CPU with torch's dynamic int8 quantisation of every Linear layer
(``quantize: int8``): built deterministically at load from the package's weights, nothing
derived is stored, and :func:`quantized_digest` identifies the exact weights a head was
trained on (the artifact records it; a mismatch refuses to serve). A head trained on fp32
features is not valid on int8 ones, so the digest is part of the model's identity.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepfake_stream.core.errors import ModelUnavailable
from deepfake_stream.models.base import BaseDetector, DetectorSpec, Score
from deepfake_stream.models.heads import LogisticHead, load_head
from deepfake_stream.models.kinds import DetectorKind

FEATURES = [
    "curvature_per_token",
    "ratio",
    "win_curvature_mean",
    "win_curvature_min",
    "win_curvature_max",
    "win_curvature_std",
    "win_ratio_mean",
    "win_ratio_min",
    "win_ratio_max",
    "win_ratio_std",
    "mean_log_likelihood",
    "mean_entropy",
    "top1_fraction",
    "log_tokens",
    "z_p10",
    "z_p25",
    "z_p50",
    "z_p75",
    "z_p90",
    "z_positive_fraction",
    "z_above_1_fraction",
    "ll_p10",
    "ll_p50",
    "ll_p90",
    "entropy_p10",
    "entropy_p50",
    "entropy_p90",
    "gain",
    "cache_gain",
    "win_cache_gain_mean",
    "win_cache_gain_min",
    "win_cache_gain_max",
    "win_cache_gain_std",
]
"""Normalised statistics first; raw log-likelihood/entropy next so the head can undo scale;
then the distribution over tokens of the standardised surprise
``z_t = (log p(x_t) - E[log p]) / sqrt(Var[log p])`` (Fast-DetectGPT's criterion per token)
and of the log-likelihood and entropy; last, the log-likelihood beyond a prior (README,
"Normalising by a prior"): ``gain`` beyond the context-free prior, ``cache_gain`` beyond an
in-text prior that also learns the text's own repetition, whole and per window."""
N_TOKEN_STATS = 6
"""Per token: log-likelihood, E[log p] (= -entropy), Var[log p], top-1 hit, log-probability
of the token under the context-free prior, the token id (for the in-text prior)."""
CACHE_ALPHA = 10.0
"""Weight, in tokens, of the context-free prior in the in-text prior (the prior study's)."""
FEATURE_SETS = {
    "curvature": ["curvature_per_token"],
    "normalised": FEATURES[:10],
    "all": FEATURES,
    "cache_gain": ["cache_gain"],
    "cache_gain_windows": [
        "cache_gain",
        "win_cache_gain_mean",
        "win_cache_gain_min",
        "win_cache_gain_max",
        "win_cache_gain_std",
    ],
    "cache_gain+ll": ["cache_gain", "mean_log_likelihood"],
}
"""What a head may read: the study compares them cross-set (models/training/curvature.py)."""
HEAD_FILE = "head.json"
FEATURE_VERSION = 2
"""Bump when the features change: the training cache and the model version follow it."""


def token_statistics(logits: Any, targets: Any) -> Any:
    """Per token (float64 ``(n, 4)``): log-likelihood of the target, mean and variance of the
    log-probability under the model's own predictive distribution, top-1 hit."""
    import torch

    logp = logits.float().log_softmax(-1)
    ll = logp.gather(-1, targets[:, None]).squeeze(-1)
    p = logp.exp()
    mean_ref = (p * logp).sum(-1)
    # Two passes, not E[x^2] - E[x]^2: that cancels badly in float32 for peaked rows.
    var_ref = (p * (logp - mean_ref[:, None]).square()).sum(-1)
    top1 = (logp.argmax(-1) == targets).double()
    return torch.stack([ll.double(), mean_ref.double(), var_ref.double(), top1], dim=-1)


def cache_gains(
    ll: np.ndarray, prior_ll: np.ndarray, ids: np.ndarray, *, alpha: float = CACHE_ALPHA
) -> np.ndarray:
    """Per token, log p(x_t | text so far) minus the log of an in-text prior: the token's
    count among the tokens before it, smoothed towards the context-free prior (Dirichlet,
    ``alpha`` tokens, :data:`CACHE_ALPHA` as served). What the model predicts beyond common
    words and beyond the text repeating itself: human writing that is predictable for those
    reasons (a student essay repeating its own words) does not look like AI text on this
    statistic."""
    # How often each token occurred before it: its rank among equal ids in a stable sort
    # (vectorised: a Python loop here cost a third of the time CTranslate2's pass takes).
    tokens = np.asarray(ids, dtype=np.int64)
    n = len(tokens)
    order = np.argsort(tokens, kind="stable")
    ranked = tokens[order]
    first = np.ones(n, dtype=bool)
    first[1:] = ranked[1:] != ranked[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else first
    before = np.empty(n)
    before[order] = np.arange(n) - start
    prior = (before + alpha * np.exp(prior_ll)) / (np.arange(n) + alpha)
    return np.asarray(ll - np.log(prior))


def text_features(per_token: np.ndarray, window: int) -> np.ndarray:
    """One text's per-token statistics ``(n, N_TOKEN_STATS)`` → :data:`FEATURES`.

    Windows are consecutive runs of ``window`` tokens; a remainder shorter than half a
    window joins the previous one (a 3-token window's curvature is noise). A text with no
    scored token gets zeros rather than NaN."""
    n = len(per_token)
    out = np.zeros(len(FEATURES), dtype=np.float64)
    if n == 0:
        return out
    ll, mean_ref, var_ref, top1, prior_ll, ids = per_token.T
    gains = cache_gains(ll, prior_ll, ids)
    bounds = [*range(0, n, window), n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < window / 2:
        del bounds[-2]
    curv, ratio, win_gain = [], [], []
    for a, b in itertools.pairwise(bounds):
        c, r = _curvature_ratio(ll[a:b], mean_ref[a:b], var_ref[a:b])
        curv.append(c / np.sqrt(b - a))
        ratio.append(r)
        win_gain.append(gains[a:b].mean())
    c_all, r_all = _curvature_ratio(ll, mean_ref, var_ref)
    curv_a, ratio_a, gain_a = np.array(curv), np.array(ratio), np.array(win_gain)
    z = (ll - mean_ref) / np.sqrt(np.maximum(var_ref, 1e-6))
    q = (10, 25, 50, 75, 90)
    out[:] = [
        c_all / np.sqrt(n),
        r_all,
        curv_a.mean(),
        curv_a.min(),
        curv_a.max(),
        curv_a.std(),
        ratio_a.mean(),
        ratio_a.min(),
        ratio_a.max(),
        ratio_a.std(),
        ll.mean(),
        -mean_ref.mean(),
        top1.mean(),
        np.log(n),
        *np.percentile(z, q),
        (z > 0).mean(),
        (z > 1).mean(),
        *np.percentile(ll, (10, 50, 90)),
        *np.percentile(-mean_ref, (10, 50, 90)),
        (ll - prior_ll).mean(),
        gains.mean(),
        gain_a.mean(),
        gain_a.min(),
        gain_a.max(),
        gain_a.std(),
    ]
    return out


def _curvature_ratio(
    ll: np.ndarray, mean_ref: np.ndarray, var_ref: np.ndarray
) -> tuple[float, float]:
    curvature = (ll.sum() - mean_ref.sum()) / np.sqrt(max(var_ref.sum(), 1e-12))
    ratio = (-ll.mean()) / max(-mean_ref.mean(), 1e-6)
    return float(curvature), float(ratio)


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantisation of every ``nn.Linear`` (weights int8 per tensor, activations
    quantised on the fly): deterministic given the fp32 weights, so it is rebuilt at load."""
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch.ao's eager quantisation is deprecated in favour of torchao (not installed);
        # it is still what this torch ships, and the digest check catches any change.
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def quantized_digest(model: Any) -> str:
    """sha256 over every quantised Linear's int8 weights, scale and zero point, in module
    order: what a head's features depend on, checked at load against the artifact."""
    h = hashlib.sha256()
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if (
            callable(weight)
            and type(module).__name__ == "Linear"
            and "quantized" in type(module).__module__
        ):
            w = weight()
            h.update(name.encode())
            h.update(w.int_repr().numpy().tobytes())
            h.update(np.float64(w.q_scale()).tobytes())
            h.update(np.int64(w.q_zero_point()).tobytes())
    return h.hexdigest()


class WindowStatistics:
    """Truncate, tokenise and reduce texts to :data:`FEATURES` with one forward pass each."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_chars: int = 4000,
        max_tokens: int = 256,
        window: int = 64,
        max_batch: int = 16,
        max_batch_tokens: int = 2048,
        vocab_chunk: int = 512,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_chars, self.max_tokens = int(max_chars), int(max_tokens)
        self.window = int(window)
        self.max_batch, self.max_batch_tokens = int(max_batch), int(max_batch_tokens)
        self.vocab_chunk = int(vocab_chunk)
        # The first token has no left context: condition it on the document separator.
        self.prefix_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._prior: Any = None

    OPTION_KEYS = (
        "max_chars",
        "max_tokens",
        "window",
        "max_batch",
        "max_batch_tokens",
        "vocab_chunk",
    )

    @classmethod
    def from_options(cls, model: Any, tokenizer: Any, options: dict[str, Any]) -> WindowStatistics:
        return cls(model, tokenizer, **{k: options[k] for k in cls.OPTION_KEYS if k in options})

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Character limit first (cheap, bounds tokeniser work), then the token limit."""
        clipped = [t[: self.max_chars] for t in texts]
        ids = self.tokenizer(clipped, add_special_tokens=False)["input_ids"]
        return [[self.prefix_id, *row[: self.max_tokens]] for row in ids]

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), len(FEATURES))`` float64, in the input order."""
        import torch

        encoded = self.encode(texts)
        feats = np.zeros((len(texts), len(FEATURES)), dtype=np.float64)
        # Length-bucketed sub-batches: sorted by length, so padding stays small.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        with torch.inference_mode():
            for batch in self._sub_batches(order, encoded):
                for i, per_token in zip(
                    batch, self._score([encoded[i] for i in batch]), strict=True
                ):
                    feats[i] = text_features(per_token, self.window)
        return feats

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

    def _score(self, rows: list[list[int]]) -> list[np.ndarray]:
        """Per-token statistics of each row. The LM head runs on chunks of hidden states,
        each reduced at once, so the ``tokens x vocab`` tensor is never whole in memory."""
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        hidden = self.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        valid = mask[:, 1:].bool()  # position t predicts token t + 1
        states = hidden[:, :-1][valid]
        targets = ids[:, 1:][valid]
        if len(targets):
            stats = torch.cat(
                [
                    token_statistics(
                        self.model.lm_head(states[s : s + self.vocab_chunk]),
                        targets[s : s + self.vocab_chunk],
                    )
                    for s in range(0, len(targets), self.vocab_chunk)
                ]
            )
            prior = self.prior()[targets]
            per_token = torch.cat(
                [stats, prior[:, None], targets.double()[:, None]], dim=-1
            ).numpy()
        else:
            per_token = np.zeros((0, N_TOKEN_STATS))
        counts = valid.sum(1).tolist()
        return np.split(per_token, np.cumsum(counts)[:-1]) if rows else []

    def prior(self) -> Any:
        """The context-free prior: log p(token | the document separator alone), float64,
        one forward pass of the same (int8) model, computed once."""
        import torch

        if self._prior is None:
            hidden = self.model.base_model(
                input_ids=torch.tensor([[self.prefix_id]])
            ).last_hidden_state
            self._prior = self.model.lm_head(hidden[0, -1:]).double().log_softmax(-1)[0]
        return self._prior


def load_statistics(options: dict[str, Any], device: str = "cpu") -> tuple[WindowStatistics, str]:
    """SmolLM2 from the package, int8-quantised on CPU when ``quantize`` is ``int8`` (the
    default); returns the extractor and the weights digest (``fp32`` when not quantised)."""
    from deepfake_stream.models.smollm import configure_threads, load_smollm

    configure_threads(device, options.get("num_threads"))
    lm = load_smollm(device, cache_dir=options.get("cache_dir"))
    model, digest = lm.model, "fp32"
    if options.get("quantize", "int8") == "int8":
        if device != "cpu":
            raise ModelUnavailable("quantize: int8 runs on CPU only; use quantize: none on GPU")
        model = quantize_int8(model)
        digest = quantized_digest(model)
    return WindowStatistics.from_options(model, lm.tokenizer, options), digest


class CurvatureDetector(BaseDetector):
    """Detector kind ``curvature`` (registry options: ``max_chars``, ``max_tokens``,
    ``window``, ``quantize``, ``max_batch``, ``max_batch_tokens``, ``vocab_chunk``,
    ``num_threads``, ``cache_dir``)."""

    def __init__(self, spec: DetectorSpec) -> None:
        super().__init__(spec)
        self._stats: WindowStatistics | None = None
        self._head: LogisticHead | None = None
        self._columns: list[int] = []

    def read_model(self) -> str:
        loaded = load_head(self.spec, HEAD_FILE)
        options = dict(loaded.options)
        if self.spec.device != "cpu":
            options["quantize"] = "none"  # int8 dynamic quantisation is CPU-only
        stats, digest = load_statistics(options, self.spec.device)
        expected = loaded.head.extra.get("weights_sha256")
        if self.spec.device == "cpu" and expected and expected != digest:
            raise ModelUnavailable(
                f"{self.spec.model_id}: the quantised SmolLM2 weights (sha256 {digest[:12]}) are "
                f"not those its head was trained on ({str(expected)[:12]}); retrain it"
            )
        unknown = set(loaded.head.features) - set(FEATURES)
        if unknown:
            raise ModelUnavailable(
                f"{self.spec.model_id}: head reads unknown features {sorted(unknown)}"
            )
        self._columns = [FEATURES.index(f) for f in loaded.head.features]
        self._stats, self._head = stats, loaded.head
        return loaded.version

    def predict(self, texts: Sequence[str]) -> list[Score]:
        feats = self.loaded(self._stats).features(texts)
        probs = self.loaded(self._head).predict_proba(feats[:, self._columns])
        return [
            Score(
                score=float(p),
                details={k: round(float(v), 6) for k, v in zip(FEATURES, f, strict=True)},
            )
            for p, f in zip(probs, feats, strict=True)
        ]

    def release_model(self) -> None:
        self._stats = self._head = None


KIND = DetectorKind(
    name="curvature",
    detector=CurvatureDetector,
    trainer="deepfake_stream.models.training.curvature:train",
    package_weights="deepfake_stream.models.smollm:gguf_path",
)

__all__ = ["FEATURES", "KIND", "CurvatureDetector", "WindowStatistics", "text_features"]
