"""Publish input items from a JSONL file (one item per line, see the contract) to detect.in.
Each line is validated first: bad lines are reported with their line number and skipped
(exit code 1), unless --raw sends every line's bytes unchanged (for exercising the
dead-letter path). Extra fields, such as a corpus's `label`, are dropped."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from deepfake_stream.core.settings import Settings

HELP = "publish input items from a JSONL file (progress bar, --rate)"
SETTINGS = ("kafka", "topics", "limits")
EXAMPLES = """\
  deepfake-stream produce deepfake_stream/demo.jsonl
  deepfake-stream produce items.jsonl --rate 200 --limit 10000
  deepfake-stream produce broken.jsonl --raw --kafka-bootstrap-servers kafka:9092
"""
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="JSONL file of input items")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="items per second ceiling (default: as fast as the broker acks)",
    )
    parser.add_argument("--limit", type=int, default=None, help="publish at most N lines")
    parser.add_argument(
        "--raw", action="store_true", help="send each line's bytes unchanged, without validation"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def check_arguments(args: argparse.Namespace) -> str | None:
    """A missing file is reported as such, before the CLI looks for a broker."""
    if not args.file.is_file():
        return (
            f"{args.file} does not exist (or is not a file): give a JSONL file of input "
            'items, one {"id", "text"} object per line (deepfake_stream/demo.jsonl is one)'
        )
    return None


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.producers.produce_file import produce_file

    if (problem := check_arguments(args)) is not None:
        log.error("%s", problem)
        return 2
    report = asyncio.run(
        produce_file(
            settings,
            args.file,
            rate=args.rate,
            raw=args.raw,
            limit=args.limit,
            progress=not args.no_progress,
        )
    )
    for n, why in report.skipped[:20]:
        log.error("%s line %d skipped: %s", args.file, n, why)
    rate = report.sent / report.seconds if report.seconds else 0.0
    log.info(
        "published %d items to %s in %.1fs (%.0f items/s); skipped %d",
        report.sent,
        settings.topics.input,
        report.seconds,
        rate,
        len(report.skipped),
    )
    return 1 if report.skipped else 0
