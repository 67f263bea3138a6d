"""Read the verdict store: `verdicts ID` prints an item's history (verdicts and dead
letters, newest first) as JSON lines; `verdicts export --since ... --format jsonl|csv`
writes every matching verdict to stdout or --output, with a progress bar on stderr."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime
from typing import IO, Any

from deepfake_stream.core.settings import Settings

HELP = "an item's verdict history (verdicts ID), or bulk export (verdicts export)"
SETTINGS = ("database",)
EXAMPLES = """\
  deepfake-stream verdicts item-42
  deepfake-stream verdicts export --since 2026-12-01 --label ai --format csv -o ai.csv
  deepfake-stream verdicts export --tenant acme \\
      --database-url postgresql://postgres@127.0.0.1:5432/verdicts
"""
CSV_COLUMNS = [
    "id",
    "tenant",
    "model_id",
    "model_version",
    "score",
    "label",
    "threshold",
    "operating_point",
    "confidence",
    "text_sha256",
    "backend",
    "fallback_from",
    "attempts",
    "replay",
    "scored_at",
    "revises",
]


def _time(text: str) -> datetime:
    from deepfake_stream.store.rows import parse_time

    parsed = parse_time(text)
    if parsed is None:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}")
    return parsed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="ID|export", help="an item id, or `export`")
    parser.add_argument("--tenant", default=None, help="only this tenant's verdicts")
    parser.add_argument("--since", type=_time, default=None, help="export: scored at or after")
    parser.add_argument("--until", type=_time, default=None, help="export: scored before")
    parser.add_argument("--label", choices=["ai", "human"], default=None)
    parser.add_argument("--model-id", default=None)
    parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    parser.add_argument("--output", "-o", default=None, help="file (default: stdout)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _csv_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


async def _export(args: argparse.Namespace, settings: Settings, out: IO[str]) -> int:
    from tqdm import tqdm

    from deepfake_stream.store import db, queries

    where = queries.VerdictFilter(
        tenant=args.tenant,
        label=args.label,
        model_id=args.model_id,
        since=args.since,
        until=args.until,
    )
    engine = db.make_engine(settings)
    try:
        total = await queries.count_verdicts(engine, where)
        writer = None
        if args.format == "csv":
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
        n = 0
        with tqdm(total=total, unit="verdict", disable=args.no_progress, file=sys.stderr) as bar:
            async for verdict in queries.export_verdicts(engine, where):
                if writer is not None:
                    writer.writerow({k: _csv_value(verdict.get(k)) for k in CSV_COLUMNS})
                else:
                    out.write(json.dumps(verdict, separators=(",", ":")) + "\n")
                n += 1
                bar.update(1)
        return n
    finally:
        await engine.dispose()


async def _history(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.store import db, queries

    engine = db.make_engine(settings)
    try:
        entries = await queries.history(engine, args.target, args.tenant)
    finally:
        await engine.dispose()
    for entry in entries:
        print(json.dumps(entry, separators=(",", ":")))
    if not entries:
        print(f"no verdict or dead letter for {args.target!r}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.commands.db import run_against_store

    if args.target != "export":
        return run_against_store(settings, lambda: _history(args, settings))

    async def export() -> int:
        if args.output:
            with open(args.output, "w", newline="", encoding="utf-8") as out:  # noqa: ASYNC230
                n = await _export(args, settings, out)
        else:
            n = await _export(args, settings, sys.stdout)
        print(f"exported {n} verdicts", file=sys.stderr)
        return 0

    return run_against_store(settings, export)
