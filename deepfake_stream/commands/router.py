"""Consume detect.in, validate each item, choose its model and a live backend, and republish
it to detect.backend.<target>. Bad messages become dead letters on detect.dlq; items whose
backends all lack a live worker are held until one announces itself."""

from __future__ import annotations

import argparse

from deepfake_stream.commands._run import add_bounded_run, run_until_signalled
from deepfake_stream.core.settings import Settings

HELP = "run the routing consumer (detect.in -> detect.backend.*)"
SETTINGS = ("kafka", "topics", "limits", "worker", "router", "models", "metrics", "telemetry")
EXAMPLES = """\
  deepfake-stream router
  deepfake-stream router --kafka-bootstrap-servers kafka:9092 --metrics-port 9100
  deepfake-stream router --router-hold-max-s 60 --count 1000 --timeout 120
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bounded_run(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.routing.service import serve_router

    return run_until_signalled(
        lambda stop: serve_router(settings, stop=stop, count=args.count, timeout=args.timeout)
    )
