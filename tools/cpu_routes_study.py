"""CPU routes for SmolLM2's forward pass (issue 8, item 4): speed and feature fidelity.

The SmolLM2-135M forward pass is the cost of every SmolLM2 detector. This study runs the same
texts, truncated to ``--tokens`` tokens, one text per pass, through each route in one process,
in interleaved rounds (the cores here are shared and noisy, so only ratios measured side by
side mean anything):

- ``torch fp32``: today's transformers loop (``small-perplexity``'s scorer);
- ``torch int8``: torch dynamic quantisation of every Linear layer (``small-curvature``);
- ``ort fp32``: the same model exported to ONNX (``torch.onnx.export``, dynamo), ONNX Runtime;
- ``ort int8``: that ONNX file with ONNX Runtime's dynamic int8 quantisation of its weights
  (``--per-channel``: one scale per output channel instead of per tensor);
- ``openvino fp32``: the same ONNX file compiled by OpenVINO for the CPU;
- ``openvino int8``: OpenVINO with int8 weights (NNCF's ``compress_weights``, per channel,
  activations in fp32), where NNCF is installed;
- ``ct2 int8``: CTranslate2's converter of the transformers model, int8 weights
  (``forward_batch`` returns the logits).

Speed is texts per second at batch 1. Fidelity is the Pearson correlation, over the texts, of
each route's mean token log-likelihood with ``torch fp32``'s: a head trained on one route's
features is valid only on features that agree with them, and lower agreement is noise added
to every statistic a detector computes from the log-probabilities.

The exported files go under ``$DEEPFAKE_STREAM_CACHE/onnx-routes`` (an ONNX export takes about a
minute; CTranslate2's under ``ct2-routes``) and are never loaded by a service: nothing here
ships. Needs the runtimes, which the project does not install (a route whose package is
missing is skipped, with a note)::

    pip install onnxruntime onnx onnxscript openvino nncf ctranslate2
    python tools/cpu_routes_study.py --data ../shared/data/ood_dev/fastdetect_family.jsonl \\
        [--texts 24] [--tokens 128] [--threads 1] [--rounds 2] [--per-channel] [--json]

``--quality N`` scores a seeded sample of N human and N AI texts of ``--data`` instead of its
first texts, each prefixed with the document separator as the curvature detector encodes it,
and adds per route the AUROC of mean log p and of ``cache_gain`` (the detector's in-text-prior
statistic, :func:`~deepfake_stream.models.detectors.curvature.cache_gains`; its context-free
prior is the route's own prediction after the separator): what a route's lost fidelity costs
a detector, measured rather than inferred from a correlation.

``--repeatable`` instead builds the ONNX export, OpenVINO's int8 weights and CTranslate2's
int8 model twice each, in fresh directories, and prints the sha256 of each build: a route
rebuilt at load, as the torch int8 one is, can only be checked against a head's recorded
digest if its build is byte-for-byte the same every time.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_stream.models.dataset import load_labelled
from deepfake_stream.models.detectors.curvature import WindowStatistics, cache_gains, quantize_int8
from deepfake_stream.models.smollm import cache_root, load_smollm
from deepfake_stream.models.smollm_ct2 import log_p_and_prior as served_log_p_and_prior

Route = Callable[[Any], np.ndarray]


def _logits_module(model: Any) -> Any:
    import torch

    class Logits(torch.nn.Module):
        """input_ids -> logits, no cache: the one graph every route runs."""

        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_ids: Any) -> Any:
            return self.m(input_ids=input_ids, use_cache=False).logits

    return Logits().eval()


def export_onnx(module: Any, example: Any, directory: Path, per_channel: bool) -> tuple[Path, Path]:
    """(fp32, int8) ONNX files of ``module``, exported once and reused from ``directory``."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    directory.mkdir(parents=True, exist_ok=True)
    fp32 = directory / "smollm2-fp32.onnx"
    int8 = directory / f"smollm2-int8{'-per-channel' if per_channel else ''}.onnx"
    if not fp32.is_file():
        t0 = time.perf_counter()
        batch, tokens = torch.export.Dim("batch", max=64), torch.export.Dim("t", min=2, max=2048)
        # The exporter prints its progress on stdout, which --json keeps for the result.
        with contextlib.redirect_stdout(sys.stderr):
            torch.onnx.export(
                module,
                (example,),
                str(fp32),
                input_names=["input_ids"],
                output_names=["logits"],
                dynamic_shapes=({0: batch, 1: tokens},),
                opset_version=18,
                dynamo=True,
            )
        print(f"exported {fp32} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if not int8.is_file():
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=per_channel)
    return fp32, int8


def ort_route(path: Path, threads: int) -> Route:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda ids: session.run(None, {"input_ids": ids.numpy()})[0]


def openvino_int8(path: Path) -> Any:
    """The ONNX file's model with NNCF's int8 weights (per channel, symmetric)."""
    import nncf  # only the int8 route needs it
    import openvino as ov

    # NNCF logs a statistics table to stdout, which --json keeps for the result.
    logging.getLogger("nncf").setLevel(logging.WARNING)
    model = ov.Core().read_model(str(path))
    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM)


def openvino_route(path: Path, threads: int, int8: bool) -> Route:
    import openvino as ov

    model = openvino_int8(path) if int8 else ov.Core().read_model(str(path))
    compiled = ov.Core().compile_model(
        model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    )
    return lambda ids: np.asarray(compiled({"input_ids": ids.numpy()})[0])


def ct2_route(model_dir: Path, directory: Path, threads: int) -> Route:
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    target = directory / "smollm2-int8"
    if not (target / "model.bin").is_file():
        with contextlib.redirect_stdout(sys.stderr):
            TransformersConverter(str(model_dir)).convert(str(target), quantization="int8")
    generator = ctranslate2.Generator(
        str(target), device="cpu", compute_type="int8", intra_threads=threads, inter_threads=1
    )
    return lambda ids: np.asarray(generator.forward_batch(ids.tolist()))


def optional_routes(onnx32: Path, model_dir: Path, threads: int) -> dict[str, Route]:
    """The routes whose runtime is installed; a note on stderr for each one that is not."""
    routes: dict[str, Route] = {}
    makers = {
        "openvino fp32": lambda: openvino_route(onnx32, threads, int8=False),
        "openvino int8": lambda: openvino_route(onnx32, threads, int8=True),
        "ct2 int8": lambda: ct2_route(model_dir, cache_root() / "ct2-routes", threads),
    }
    for name, make in makers.items():
        try:
            routes[name] = make()
        except ImportError as exc:
            print(f"skipping {name}: {exc.name} is not installed", file=sys.stderr)
    return routes


def repeatable(model_dir: Path, module: Any, example: Any) -> dict[str, list[str]]:
    """sha256 of each route's weights, built twice from scratch."""

    def digest(path: Path) -> str:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()

    import openvino as ov

    builds: dict[str, list[str]] = {}
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            fp32, _int8 = export_onnx(module, example, d / "onnx", per_channel=True)
            builds.setdefault("onnx fp32 (graph + weights)", []).append(
                digest(fp32)[:16] + " " + digest(fp32.with_name(fp32.name + ".data"))[:16]
            )
            ov.save_model(openvino_int8(fp32), d / "ov.xml", compress_to_fp16=False)
            builds.setdefault("openvino int8 weights (.bin)", []).append(digest(d / "ov.bin"))
            ct2_route(model_dir, d / "ct2", threads=1)
            builds.setdefault("ct2 int8 (model.bin)", []).append(
                digest(d / "ct2" / "smollm2-int8" / "model.bin")
            )
    return builds


def mean_log_p(logits: np.ndarray, ids: Any) -> float:
    import torch

    lp = torch.log_softmax(torch.as_tensor(logits[0, :-1]).float(), -1)
    return float(lp.gather(-1, ids[0, 1:, None]).mean())


def log_p_and_prior(logits: np.ndarray, ids: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per token after the first: (log p in context, log p under the context-free prior,
    token id), from one route's logits of one text (batch of 1), as small-fusion reads them
    (:func:`~deepfake_stream.models.smollm_ct2.log_p_and_prior`)."""
    return served_log_p_and_prior(np.asarray(logits)[0], ids[0].tolist())


def mean_cache_gain(logits: np.ndarray, ids: Any) -> float:
    """The curvature detector's ``cache_gain`` from one route's logits."""
    return float(cache_gains(*log_p_and_prior(logits, ids)).mean())


def quality_sample(path: Path, n: int, seed: int = 8) -> tuple[list[str], np.ndarray]:
    """``n`` human and ``n`` AI texts of ``path`` in a seeded order: (texts, labels)."""
    import random

    examples = load_labelled(path)
    rng = random.Random(seed)
    picked = []
    for label in (0, 1):
        rows = [e for e in examples if e.label == label]
        rng.shuffle(rows)
        picked += rows[:n]
    return [e.text for e in picked], np.array([e.label for e in picked])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="labelled JSONL; its first texts")
    parser.add_argument("--texts", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, every route")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per route")
    parser.add_argument("--per-channel", action="store_true", help="ONNX int8 scale per channel")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument(
        "--repeatable", action="store_true", help="build each route's weights twice; compare"
    )
    parser.add_argument(
        "--quality",
        type=int,
        metavar="N",
        help="score N human and N AI texts; add each route's AUROC of mean log p and cache_gain",
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    lm = load_smollm("cpu")
    tokenizer = lm.tokenizer
    labels = None
    if args.quality:
        texts, labels = quality_sample(args.data, args.quality)
        encoder = WindowStatistics(lm.model, tokenizer, max_tokens=args.tokens)
        ids = [torch.tensor([row]) for row in encoder.encode(texts)]
    else:
        texts = [e.text for e in load_labelled(args.data)[: args.texts]]
        ids = [
            tokenizer(t, truncation=True, max_length=args.tokens, return_tensors="pt")["input_ids"]
            for t in texts
        ]
    fp32 = _logits_module(load_smollm("cpu").model)
    if args.repeatable:
        builds = repeatable(lm.cache_path, fp32, ids[0])
        for name, digests in builds.items():
            same = "same" if len(set(digests)) == 1 else "DIFFERENT"
            print(f"{name:30} {same}: {' / '.join(digests)}", file=sys.stderr)
        if args.json:
            print(json.dumps(builds))
        return 0 if all(len(set(d)) == 1 for d in builds.values()) else 1
    int8 = quantize_int8(_logits_module(load_smollm("cpu").model))
    onnx32, onnx8 = export_onnx(
        fp32, ids[0], cache_root() / "onnx-routes", per_channel=args.per_channel
    )
    routes: dict[str, Route] = {
        "torch fp32": lambda x: fp32(x).numpy(),
        "torch int8": lambda x: int8(x).numpy(),
        "ort fp32": ort_route(onnx32, args.threads),
        "ort int8" + (" per-channel" if args.per_channel else ""): ort_route(onnx8, args.threads),
        **optional_routes(onnx32, lm.cache_path, args.threads),
    }
    speed: dict[str, list[float]] = {k: [] for k in routes}
    values: dict[str, np.ndarray] = {}
    gains: dict[str, np.ndarray] = {}
    lines = sys.stderr if args.json else sys.stdout
    with torch.inference_mode():
        for r in range(args.rounds):
            for name, route in routes.items():
                route(ids[0])  # warm-up: first-call allocation is not a route's speed
                t0 = time.perf_counter()
                logits = [route(x) for x in ids]
                speed[name].append(len(ids) / (time.perf_counter() - t0))
                values[name] = np.array(
                    [mean_log_p(lg, x) for lg, x in zip(logits, ids, strict=True)]
                )
                gains[name] = np.array(
                    [mean_cache_gain(lg, x) for lg, x in zip(logits, ids, strict=True)]
                )
                print(
                    f"round {r} {name:22} {speed[name][-1]:6.2f} texts/s  "
                    f"load {os.getloadavg()[0]:.1f}",
                    file=lines,
                )
    base = float(np.mean(speed["torch fp32"]))
    result: dict[str, Any] = {
        "texts": len(ids),
        "tokens": args.tokens,
        "threads": args.threads,
        "routes": {
            name: {
                "texts_per_s": round(float(np.mean(s)), 2),
                "vs_torch_fp32": round(float(np.mean(s)) / base, 2),
                "mean_log_p_corr": round(
                    float(np.corrcoef(values["torch fp32"], values[name])[0, 1]), 4
                ),
            }
            for name, s in speed.items()
        },
    }
    if labels is not None:
        from sklearn.metrics import roc_auc_score

        result["quality"] = {"n_human": int((labels == 0).sum()), "n_ai": int(labels.sum())}
        for name, row in result["routes"].items():
            row["auroc_mean_log_p"] = round(float(roc_auc_score(labels, values[name])), 3)
            row["auroc_cache_gain"] = round(float(roc_auc_score(labels, gains[name])), 3)
    for name, row in result["routes"].items():
        print(
            f"{name:22} {row['texts_per_s']:6.2f} texts/s  {row['vs_torch_fp32']:.2f}x torch fp32"
            f"  fidelity (corr of mean log p) {row['mean_log_p_corr']:.4f}"
            + (
                f"  AUROC log p {row['auroc_mean_log_p']:.3f}"
                f" cache_gain {row['auroc_cache_gain']:.3f}"
                if "auroc_cache_gain" in row
                else ""
            ),
            file=lines,
        )
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
