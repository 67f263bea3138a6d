"""Consume detect.verdicts and detect.dlq (consumer group <prefix>.store) and write every
verdict and dead letter to the verdict store (DATABASE_URL; unset: a SQLite file in the
state directory). Migrates the database on start; waits while it is unreachable; commits a
Kafka offset only after the database transaction holding its message commits."""

from __future__ import annotations

import argparse

from deepfake_stream.commands._run import add_bounded_run, run_until_signalled
from deepfake_stream.core.settings import Settings

HELP = "write verdicts and dead letters to the verdict store (DATABASE_URL)"
SETTINGS = ("kafka", "topics", "worker", "database", "metrics")
EXAMPLES = """\
  deepfake-stream store
  deepfake-stream store --database-url postgresql://postgres@127.0.0.1:5432/verdicts
  deepfake-stream store --database-store-batch-size 1000 --count 5000 --timeout 60
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bounded_run(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.store.service import serve_store

    return run_until_signalled(
        lambda stop: serve_store(settings, stop=stop, count=args.count, timeout=args.timeout)
    )
