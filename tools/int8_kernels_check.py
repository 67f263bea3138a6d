"""Do a model's scores depend on the CPU's int8 kernels? Score the same texts on the pinned
kernels (``MODELS_INT8_KERNELS=avx2``: oneDNN's AVX2 ones) and on this machine's native
oneDNN and MKL kernels, side by side, and compare the scores and the speed.

CTranslate2 and its oneDNN fix their kernels once per process, so each setting runs in a
child process of its own, one after the other, on the same texts (texts/s: scoring only).
Needs the shared data next to the repository::

    python tools/int8_kernels_check.py [--model small-fusion] [--domain news_xsum] [--n 48]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

DATA = Path("../shared/data/ood_dev/fastdetect_family.jsonl")


def child(model: str, data: Path, domain: str, n: int) -> dict[str, object]:
    """This process's scores, texts per second and numerics."""
    from deepfake_stream.consumers.scoring import document_scorer
    from deepfake_stream.core.settings import LimitSettings
    from deepfake_stream.models.calibration import load_sets
    from deepfake_stream.models.evaluation import score_model
    from deepfake_stream.models.registry import load_registry

    (examples,) = (s.examples for s in load_sets([str(data)], per_cell=None))
    texts = [e.text for e in examples if e.fields.get("domain") == domain][:n]
    registry, scorer = load_registry(), document_scorer(LimitSettings().max_windows)
    # texts_per_s: scoring only, the model's load not counted
    return score_model(model, texts, registry=registry, progress=False, scorer=scorer)._asdict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small-fusion")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--domain", default="news_xsum")
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model, args.data, args.domain, args.n)))
        return 0
    settings = {
        "pinned avx2": {"MODELS_INT8_KERNELS": "avx2"},
        "native oneDNN": {"MODELS_INT8_KERNELS": "native", "CT2_USE_MKL": "0"},
        "native MKL": {"MODELS_INT8_KERNELS": "native", "CT2_USE_MKL": "1"},
    }
    runs = {}
    for name, env in settings.items():
        proc = subprocess.run(
            [
                *(sys.executable, __file__, "--child", "--model", args.model),
                *("--data", str(args.data), "--domain", args.domain, "--n", str(args.n)),
            ],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        runs[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    pinned = np.asarray(runs["pinned avx2"]["scores"])
    print(f"{len(pinned)} texts ({args.domain}), |score difference| from the pinned kernels:")
    for name, run in runs.items():
        diff = np.abs(np.asarray(run["scores"]) - pinned)
        ratio = run["texts_per_s"] / runs["pinned avx2"]["texts_per_s"]
        print(
            f"{name:14} {run['numerics']:34} {run['texts_per_s']:6.2f} texts/s ({ratio:.2f}x)"
            f"  max {diff.max():.3f}, median {np.median(diff):.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
