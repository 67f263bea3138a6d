"""SmolLM2 on CTranslate2 with int8 weights: the fast CPU route for its token statistics.

On these 2 cores CTranslate2 int8 runs SmolLM2's forward pass about 3 times faster than torch
fp32 and keeps its statistics (mean log p correlates 0.997 with fp32's; README, "ONNX Runtime,
OpenVINO and CTranslate2"), where torch's own dynamic int8 loses them (0.864).

Nothing new is stored in the repository: the int8 model is converted at load from the
package's weights (the safetensors copy :func:`~deepfake_stream.models.smollm.checkpoint`
writes), in seconds, into the cache directory, atomically. The conversion is byte-for-byte
repeatable, so a detector records the sha256 of ``model.bin`` it was fitted on and refuses
any other (a different CTranslate2 or transformers could convert differently, and the
statistics a detector was standardised on would no longer be the ones it reads). The
converted model holds tensors and a graph description, no code to run.

The same converted model scores differently on different int8 kernels: CTranslate2 runs its
int8 matrix products on Intel MKL on an Intel CPU and on oneDNN elsewhere (its own rule, which
``CT2_USE_MKL`` overrides), and oneDNN picks its kernels by the CPU's widest instructions
(``ONEDNN_MAX_CPU_ISA`` caps them). Their roundings differ: on an AMD EPYC with AVX512-VNNI,
oneDNN's AVX2 kernels read a text's mean ``cache_gain`` up to 0.74 away from its VNNI
kernels' (median 0.42, half the spread small-fusion standardises by). So by default
(``MODELS_INT8_KERNELS=avx2``) :func:`pin_int8_kernels` runs every CPU on oneDNN's AVX2
kernels, which small-fusion was standardised and calibrated on; ``calibrate`` records
:func:`int8_numerics`, and a detector warns where it runs on others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_stream.core.errors import ModelUnavailable
from deepfake_stream.models.detectors.curvature import cache_gains
from deepfake_stream.models.smollm import cache_root, checkpoint, file_sha256

log = logging.getLogger(__name__)

SEPARATOR = "<|endoftext|>"


def _cpu() -> tuple[str, set[str]]:
    """The CPU's vendor and flags (/proc/cpuinfo; unknown elsewhere)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown", set()
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in info.splitlines())
    )
    return fields.get("vendor_id", "unknown"), set(fields.get("flags", "").split())


# oneDNN's CPU instruction tiers, lowest first, as ONEDNN_MAX_CPU_ISA names them.
ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
)
# The tiers whose int8 matrix products round differently, widest first, with the
# /proc/cpuinfo flag each needs (the tiers between them run the same int8 kernels).
_INT8_TIERS = (
    ("AVX512_CORE_AMX", "amx_int8"),
    ("AVX512_CORE_VNNI", "avx512_vnni"),
    ("AVX512_CORE", "avx512bw"),
    ("AVX2_VNNI", "avx_vnni"),
    ("AVX2", "avx2"),
    ("AVX", "avx"),
    ("SSE41", "sse4_1"),
)
# MODELS_INT8_KERNELS -> the environment CTranslate2 and its oneDNN read. CTranslate2 picks
# MKL or oneDNN (CT2_USE_MKL) when it is imported, oneDNN its ISA at its first matrix
# product. Measured on an Intel Xeon (AVX512, AMX), 2026-12-07: CT2_USE_MKL=0 set after
# `import ctranslate2` was ignored and MKL ran, its statistics up to 0.99 from oneDNN AVX2's;
# set before, they equal those read on AMD to 1e-6. On AMD oneDNN runs either way, which is
# why a check there (after the import) passed. So pin before importing ctranslate2.
PINNED_KERNELS = {"avx2": {"CT2_USE_MKL": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"}, "native": {}}
_pinned: str | None = None
_use_mkl_at_import: str | None = None
"""CT2_USE_MKL as it was when CTranslate2 was imported before the kernels were pinned (its
backend is fixed by then); None when the pin came first."""
_late = False


def pin_int8_kernels(kernels: str) -> None:
    """Fix the int8 kernels of this process's CTranslate2 (``MODELS_INT8_KERNELS``): once per
    process, before its first model runs, since CTranslate2 and oneDNN read them only then.
    ``avx2`` overrides ``CT2_USE_MKL`` and ``ONEDNN_MAX_CPU_ISA``; ``native`` leaves them as
    the environment sets them."""
    global _pinned
    if kernels not in PINNED_KERNELS:
        raise ValueError(f"MODELS_INT8_KERNELS must be one of {sorted(PINNED_KERNELS)}")
    if _pinned is not None:
        if kernels != _pinned:
            log.warning(
                "SmolLM2 already runs on the %s int8 kernels in this process; "
                "MODELS_INT8_KERNELS=%s applies from the next start",
                _pinned,
                kernels,
            )
        return
    global _late, _use_mkl_at_import
    if "ctranslate2" in sys.modules:  # imported elsewhere first: MKL or oneDNN is decided
        _late, _use_mkl_at_import = True, os.environ.get("CT2_USE_MKL")
        if PINNED_KERNELS[kernels].get("CT2_USE_MKL", _use_mkl_at_import) != _use_mkl_at_import:
            log.warning(
                "CTranslate2 was imported before MODELS_INT8_KERNELS=%s was applied: it keeps "
                "the backend it picked then (MKL on an Intel CPU), so the scores may not be "
                "the card's; import it through deepfake_stream.models.smollm_ct2.ctranslate2",
                kernels,
            )
    for name, value in PINNED_KERNELS[kernels].items():
        if os.environ.get(name, value) != value:
            log.warning(
                "%s=%s is overridden by MODELS_INT8_KERNELS=%s (%s); set "
                "MODELS_INT8_KERNELS=native to keep it",
                *(name, os.environ[name], kernels, value),
            )
        os.environ[name] = value
    _pinned = kernels


def ctranslate2(kernels: str | None) -> Any:
    """The ``ctranslate2`` module, imported once the int8 ``kernels`` are pinned (see
    :func:`pin_int8_kernels` and the note above it); None: not pinned (a GPU's run)."""
    if kernels is not None:
        pin_int8_kernels(kernels)
    try:
        import ctranslate2 as module
    except ImportError:
        raise ModelUnavailable(
            "CTranslate2 is not installed: pip install 'deepfake-stream[server]'"
        ) from None
    return module


def int8_numerics(device: str = "cpu") -> str:
    """Which int8 kernels CTranslate2 scores with here. On a CPU: Intel MKL where the vendor is
    GenuineIntel or ``CT2_USE_MKL`` is true (CTranslate2's rule, src/cpu/backend.cc), named
    with the vendor and the widest vector extension (MKL dispatches on both); else oneDNN,
    named by the widest of its int8 tiers the CPU has and ``ONEDNN_MAX_CPU_ISA`` allows (its
    kernels depend on the instructions, not the vendor). On a GPU, the device. Two machines
    with the same answer give the same scores; two with different answers need a
    calibration each."""
    if device != "cpu":
        return f"CTranslate2 int8 on {device}"
    vendor, flags = _cpu()
    # CTranslate2 read CT2_USE_MKL when it was imported: before a late pin, that value.
    env = (_use_mkl_at_import if _late else os.environ.get("CT2_USE_MKL")) or ""
    env = env.strip().lower()
    mkl = env in {"1", "true", "on", "yes"} if env else vendor == "GenuineIntel"
    if mkl:
        isa = next((x for x in ("avx512f", "avx2", "avx") if x in flags), "sse")
        return f"MKL int8, {vendor}, {isa.upper()}"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    top = ONEDNN_ISAS.index(cap) if cap in ONEDNN_ISAS else len(ONEDNN_ISAS)
    tier = next(
        (t for t, flag in _INT8_TIERS if flag in flags and ONEDNN_ISAS.index(t) <= top), None
    )
    return f"oneDNN int8, {tier}" if tier else f"oneDNN int8, {vendor}"


def same_kernels(recorded: str, here: str) -> bool:
    """Whether scores recorded on ``recorded`` kernels hold on ``here``'s. Records made
    before oneDNN was named by its tier (2026-12-07) read "oneDNN int8, <vendor>, <widest
    extension>"; one whose widest was AVX2 or AVX ran oneDNN's tier of that name."""
    parts = [p.strip() for p in recorded.split(",")]
    if len(parts) == 3 and parts[0] == "oneDNN int8" and parts[2] in {"AVX2", "AVX"}:
        recorded = f"oneDNN int8, {parts[2]}"
    return recorded == here


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities of ``logits``, every one in float64: for studies that need
    whole rows (the served statistics need only the targets': :func:`log_p_and_prior`)."""
    lp = np.asarray(logits, dtype=np.float64)
    lp = lp - lp.max(-1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    return lp


def log_p_and_prior(
    logits: np.ndarray, ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per token after the first: (log p in context, log p under the context-free prior,
    token id), from the logits of one row (``(len(ids), vocab)``); the prior is the model's
    own prediction after the first token (the document separator).

    Only the targets' log-probabilities are kept, so each row's normaliser (log-sum-exp) is
    all that is computed over the vocabulary: its exponentials in the logits' own precision
    (float32 as served), summed in float64. That pass over 128 x 49,152 logits is the cost
    (a float64 :func:`log_softmax` of every row took 3.7 times as long); the statistics
    differ from the float64 ones by at most 1.2e-8 (64 dev texts, 2026-12-07)."""
    target = np.asarray(ids[1:], dtype=np.int64)
    x = np.asarray(logits)[: len(target)]  # the last position predicts nothing scored
    top = x.max(-1)
    lse = top.astype(np.float64) + np.log(np.exp(x - top[:, None]).sum(-1, dtype=np.float64))
    ll = x[np.arange(len(target)), target].astype(np.float64) - lse
    prior = x[0, target].astype(np.float64) - lse[0]
    return ll, prior, target


def convert_int8(source: Path, cache_dir: str | Path | None = None) -> Path:
    """The int8 CTranslate2 model of the transformers checkpoint at ``source``, converted once
    into ``<cache>/ct2/<source name>-int8`` (a temporary directory renamed into place, so
    workers starting together never read a half-written one)."""
    from ctranslate2.converters import TransformersConverter

    target = cache_root(cache_dir) / "ct2" / f"{source.name}-int8"
    if (target / "model.bin").is_file():
        return target
    log.info("converting SmolLM2 to CTranslate2 int8 in %s (first start only)", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        # The converter reports on stdout, which CLI commands keep for their results.
        with contextlib.redirect_stdout(sys.stderr):
            TransformersConverter(str(source)).convert(str(tmp / "m"), quantization="int8")
        try:
            (tmp / "m").rename(target)
        except OSError:  # another process won the race; its copy is as good as ours
            if not (target / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass(kw_only=True)
class TextStatistics:
    """Mean log p and mean ``cache_gain`` of each text's first ``max_tokens`` tokens."""

    generator: Any
    tokenizer: Any
    max_chars: int
    max_tokens: int
    max_batch: int = 16
    """Texts per forward call: 1 on a CPU (see ``parallel``), a batch on a GPU."""
    parallel: int = 1
    """Forward calls in flight at once. On a CPU, one call with every core's thread leaves
    cores idle on a 128-token text, and a batch pads; one single-threaded replica per core
    scoring a text each is faster (2 AMD EPYC cores, 64 texts: 6.7 texts/s against 4.1
    one at a time and 5.3-5.6 in batches of 16), and a text's statistics then do not
    depend on the texts scored beside it."""
    lone: Any = None
    """A replica with every core's threads, for a call that scores one text (a quiet
    stream): alone, a single-threaded replica would leave the other cores idle (threads do
    not change the logits: checked, identical)."""
    digest: str = ""
    """sha256 of the converted ``model.bin``."""
    numerics: str = ""
    """:func:`int8_numerics` of the device it runs on: what its scores depend on."""

    NAMES = ("cache_gain", "log_p")

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """The separator first (the first token has no left context otherwise), then the text,
        clipped to ``max_chars`` characters and then to ``max_tokens`` tokens."""
        prefix = self.tokenizer.convert_tokens_to_ids(SEPARATOR)
        ids = self.tokenizer([t[: self.max_chars] for t in texts], add_special_tokens=False)
        return [[prefix, *row[: self.max_tokens]] for row in ids["input_ids"]]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), 2)``: (cache_gain, log_p) per text, in order; NaN for a text with
        no tokens (the caller decides what an empty text scores)."""
        encoded = self.encode(texts)
        out = np.full((len(texts), len(self.NAMES)), np.nan)
        # One text per call on a CPU: there a padded row's logits move with its batch (oneDNN:
        # mean log p by up to 0.015 nats on 160 dev texts), alone they do not. A GPU takes
        # length-sorted sub-batches, which keep padding small.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        order = [i for i in order if len(encoded[i]) > 1]
        size = self.max_batch
        batches = [order[at : at + size] for at in range(0, len(order), size)]

        def score(batch: list[int], generator: Any) -> None:
            logits = np.asarray(generator.forward_batch([encoded[i] for i in batch]))
            for row, i in zip(logits, batch, strict=True):
                ids = encoded[i]
                ll, prior, target = log_p_and_prior(row[: len(ids)], ids)
                out[i] = (float(cache_gains(ll, prior, target).mean()), float(ll.mean()))

        if self.parallel > 1 and len(batches) > 1:
            # Each thread waits in CTranslate2 or numpy with the GIL released.
            with ThreadPoolExecutor(self.parallel, thread_name_prefix="ct2") as pool:
                list(pool.map(lambda b: score(b, self.generator), batches))
        else:
            for batch in batches:
                score(batch, self.lone or self.generator)
        return out


def load_text_statistics(
    *,
    device: str = "cpu",
    max_chars: int,
    max_tokens: int,
    max_batch: int = 16,
    num_threads: int | None = None,
    cache_dir: str | Path | None = None,
    kernels: str | None = None,
) -> TextStatistics:
    """SmolLM2 from the package, converted to CTranslate2 int8 (blocking: seconds when the
    conversion is cached, about half a minute the first time), on the int8 ``kernels``
    (default ``MODELS_INT8_KERNELS``; see :func:`pin_int8_kernels`)."""
    from transformers import AutoTokenizer

    from deepfake_stream.core.cores import available_cores
    from deepfake_stream.core.settings import ModelSettings

    cpu = device == "cpu"
    # On a CPU, pinned before CTranslate2 is imported: it fixes its backend then.
    ct2 = ctranslate2((kernels or ModelSettings().int8_kernels) if cpu else None)
    source, _ = checkpoint(cache_dir)  # the files only: CTranslate2 loads its own copy
    tokenizer = AutoTokenizer.from_pretrained(source)
    path = convert_int8(source, cache_dir)
    threads = int(num_threads) if num_threads else available_cores()
    # On a CPU, one text per call and one single-threaded replica per core (see
    # TextStatistics.parallel); a GPU takes whole batches in one call.
    parallel = threads if cpu else 1
    try:
        generator = ct2.Generator(
            str(path),
            device=device,
            compute_type="int8",
            intra_threads=1 if cpu else threads,
            inter_threads=parallel,
        )
        lone = (
            ct2.Generator(str(path), device=device, compute_type="int8", intra_threads=threads)
            if parallel > 1
            else None
        )
    except (RuntimeError, ValueError) as exc:
        raise ModelUnavailable(f"CTranslate2 cannot run SmolLM2 on {device}: {exc}") from exc
    return TextStatistics(
        generator=generator,
        tokenizer=tokenizer,
        max_chars=max_chars,
        max_tokens=max_tokens,
        max_batch=1 if cpu else max_batch,
        parallel=parallel,
        lone=lone,
        digest=file_sha256(path / "model.bin"),
        numerics=int8_numerics(device),
    )
