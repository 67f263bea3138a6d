"""Benchmarks, side by side on one broker (so ratios hold on a noisy machine).

  relay     the ceiling: a do-nothing two-hop aiokafka relay (parse, re-serialise,
            publish with acks=all, commit after ack): items/s
  model     offline texts/s of each detector at batch 1 and at its configured batch
            (--sweep: batch 1..256), and the batching gain; with no --model, also the
            default model (MODELS_DEFAULT) and small-perplexity, today's SmolLM2 loop,
            whose ratio is the default's speed goal (>= 4x)
  pipeline  the real router + worker(s): items/s at saturation, p50/p95/p99 end-to-end
            latency at saturation and at 50% of it, and the ratio to the relay
            (tiny-tfidf) or to offline batched throughput (transformer detectors);
            with the verdict store beside them: its rows/s vs the pipeline's items/s;
            and where the CPU went in each run (each process, the machine)
  idle      `up` with no traffic: CPU of every process (broker included) over 30 s, then
            the latency of single items each published after a quiet spell
  all       all of them in one run (default)

Uses KAFKA_BOOTSTRAP_SERVERS when it answers, otherwise starts the embedded broker on a
free port. Prints tables and PASS/MISS per goal; a MISS says by how much and what the
run's CPU profile says stands in the way. --json prints one JSON object last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from deepfake_stream.core.settings import Settings

HELP = "benchmarks: relay ceiling, offline model throughput, pipeline (tables, --json)"
SETTINGS = (
    "kafka",
    "topics",
    "redis",
    "limits",
    "worker",
    "router",
    "models",
    "metrics",
    "telemetry",
    "database",
)
EXAMPLES = """\
  deepfake-stream bench
  deepfake-stream bench pipeline --model tiny-tfidf --n 5000 --json
  deepfake-stream bench model --model medium-embedding --sweep --plot docs/batching.png
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what", nargs="?", default="all", choices=("all", "relay", "model", "pipeline", "idle")
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="ID",
        help=(
            "model to benchmark (repeatable; default tiny-tfidf and medium-embedding, plus"
            " offline the default model and small-perplexity for the default's speed goal)"
        ),
    )
    parser.add_argument(
        "--n", type=int, default=10_000, help="items per saturation run (default 10000)"
    )
    parser.add_argument("--sweep", action="store_true", help="model: sweep batch sizes 1..256")
    parser.add_argument("--json", action="store_true", help="print one JSON object, last line")
    parser.add_argument(
        "--plot", type=Path, default=None, metavar="PATH", help="write the batching plot (PNG)"
    )
    parser.add_argument(
        "--data", type=Path, default=None, metavar="FILE.jsonl", help="texts from JSONL"
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="auto: the GPU worker for models that may run there when a GPU is present",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default WORKER_CPU_WORKERS)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run services as tasks of this process (for profiling) instead of processes",
    )
    parser.add_argument(
        "--model-seconds", type=float, default=4.0, help="seconds per offline batch size"
    )
    parser.add_argument(
        "--paced-seconds", type=float, default=10.0, help="seconds of 50%% load publishing"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--no-store",
        action="store_true",
        help="pipeline: without the verdict store (DATABASE_URL, else a throw-away SQLite)",
    )
    parser.add_argument(
        "--no-peer",
        action="store_true",
        help="pipeline: without the FastStream peer (same detector, acks=all, commit after)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.bench.run import BenchOptions, run_bench

    opts = BenchOptions(
        what=args.what,
        models=args.model,
        n=max(1, args.n),
        sweep=args.sweep,
        data=args.data,
        backend=args.backend,
        workers=args.workers,
        in_process=args.in_process,
        model_budget_s=args.model_seconds,
        paced_s=args.paced_seconds,
        plot=args.plot,
        progress=False if args.no_progress else None,
        store=not args.no_store,
        peer=not args.no_peer,
    )
    result = asyncio.run(run_bench(settings, opts))
    m = result.meta
    print(
        f"deepfake-stream bench {args.what}  {m['date']}  {m['machine']['cores']} cores "
        f"({m['machine']['cpu']}), GPU: {m['machine']['gpu'] or 'none'}  broker {m['broker']}  "
        f"{m['seconds']:.0f}s"
    )
    print(result.render())
    if args.json:
        print(json.dumps(result.as_json(), sort_keys=True))
    return 0
