"""Consume detect.backend.<backend> in micro-batches (WORKER_MAX_BATCH_SIZE,
WORKER_MAX_WAIT_MS), score them with every model routed to that backend, and publish
verdicts to detect.verdicts. Items a detector fails on go to the next backend of their
chain; with none left, to detect.dlq. Offsets are committed only after the verdicts are
acknowledged (at-least-once). Run several processes for more throughput: they share the
consumer group deepfake-stream.<backend>."""

from __future__ import annotations

import argparse

from deepfake_stream.commands._run import add_bounded_run, run_until_signalled
from deepfake_stream.core.settings import Settings

HELP = "run a scoring worker (--backend cpu|gpu)"
SETTINGS = ("kafka", "topics", "redis", "limits", "worker", "models", "metrics", "telemetry")
EXAMPLES = """\
  deepfake-stream worker --backend cpu
  deepfake-stream worker --backend gpu --worker-max-batch-size 16 --models-only small-fusion
  deepfake-stream worker --redis-url redis://127.0.0.1:6379/0 --metrics-port 9101
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=["cpu", "gpu"],
        default="cpu",
        help="which backend topic and consumer group to serve (default cpu)",
    )
    add_bounded_run(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.consumers.service import serve_worker

    return run_until_signalled(
        lambda stop: serve_worker(
            settings, args.backend, stop=stop, count=args.count, timeout=args.timeout
        )
    )
