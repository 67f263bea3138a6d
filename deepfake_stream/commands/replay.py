"""Re-score history from detect.in, or re-inject dead letters from detect.dlq.

Choose what to replay (filters combine; every one given must match):
  --offsets P:A-B,...   (or --partition P --from-offset A --to-offset B; B inclusive)
  --since T --until T   message timestamps in [since, until); ISO 8601 or epoch ms
  --ids FILE            item ids, one per line
  --all                 everything still retained

Items from detect.in are re-scored in this process with the registry's model (--model to
pick one, --model-version to pin its version) and published to detect.verdicts (or
--output-topic, e.g. a shadow topic) with "replay": true and the new model_version.
--only-changed publishes only verdicts whose label or confidence differs from the last
verdict of that id and model on the output topic (read from its beginning first); items
with no earlier verdict are published too. A re-score whose label or confidence differs
from the item's last verdict on detect.verdicts carries "revises" (that verdict's
model_version and scored_at). Items that cannot be scored are dead-lettered with stage replay.

--dlq re-injects dead letters' original bytes into detect.in (header deepfake.replay: true)
once their cause is fixed, e.g. a model registered since; the running pipeline scores them.
--reason narrows it to dead letters with that dlq.reason (repeatable).

A progress bar runs on stderr; a summary ends the run (items read, re-scored, changed,
dead-lettered); with --json its last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from deepfake_stream.core.settings import Settings
from deepfake_stream.schemas import DLQ_REASONS

if TYPE_CHECKING:  # imported where used: a command loads only what it runs
    from deepfake_stream.producers.scan import Selection

HELP = "re-score history (offsets, time range, ids) or replay the DLQ"
SETTINGS = ("kafka", "topics", "redis", "limits", "worker", "models")
EXAMPLES = """\
  deepfake-stream replay --since 2026-12-01T00:00:00Z --until 2026-12-02T00:00:00Z
  deepfake-stream replay --offsets 0:100-200 --model tiny-tfidf --output-topic detect.shadow \\
      --only-changed
  deepfake-stream replay --dlq --reason no_live_backend
"""
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pick = parser.add_argument_group("what to replay")
    pick.add_argument("--offsets", help="PARTITION:FROM-TO[,...] (TO inclusive; empty: the end)")
    pick.add_argument("--partition", type=int, help="one partition (with --from/--to-offset)")
    pick.add_argument("--from-offset", type=int, default=0, help="first offset (default 0)")
    pick.add_argument("--to-offset", type=int, default=None, help="last offset, inclusive")
    pick.add_argument("--since", help="first timestamp: ISO 8601 or epoch milliseconds")
    pick.add_argument("--until", help="end timestamp (exclusive): ISO 8601 or epoch ms")
    pick.add_argument("--ids", type=Path, help="file of item ids, one per line")
    pick.add_argument("--all", action="store_true", help="every retained message")
    pick.add_argument("--dlq", action="store_true", help="re-inject dead letters instead")
    pick.add_argument(
        "--reason",
        action="append",
        choices=DLQ_REASONS,
        help="with --dlq: only dead letters with this dlq.reason (repeatable)",
    )
    how = parser.add_argument_group("how")
    how.add_argument("--model", help="re-score with this model (default: each item's model)")
    how.add_argument("--model-version", help="refuse unless the loaded model has this version")
    how.add_argument("--output-topic", help="where verdicts go (default: the verdicts topic)")
    how.add_argument(
        "--only-changed",
        action="store_true",
        help="publish only verdicts whose label or confidence changed",
    )
    how.add_argument("--rate", type=float, default=None, help="items per second ceiling")
    how.add_argument("--count", type=int, default=None, help="stop after N items")
    how.add_argument("--timeout", type=float, default=None, help="stop after N seconds")
    how.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    how.add_argument("--json", action="store_true", help="end with the summary as JSON")


def selection_from(args: argparse.Namespace) -> Selection:
    from deepfake_stream.producers.scan import Selection, parse_offsets, parse_time_ms, read_ids

    offsets = parse_offsets(args.offsets) if args.offsets is not None else {}
    if args.partition is not None:
        if args.partition in offsets:
            raise ValueError(f"partition {args.partition} is in --offsets and --partition")
        if args.partition < 0:
            raise ValueError("--partition must be >= 0")
        offsets[args.partition] = (args.from_offset, args.to_offset)
    if args.ids is not None and not args.ids.exists():
        raise ValueError(f"{args.ids} does not exist")
    since = parse_time_ms(args.since) if args.since is not None else None
    until = parse_time_ms(args.until) if args.until is not None else None
    if since is not None and until is not None and since >= until:
        raise ValueError(f"--since ({args.since}) must be before --until ({args.until})")
    return Selection(
        offsets=offsets,
        since_ms=since,
        until_ms=until,
        ids=read_ids(args.ids) if args.ids else None,
        reasons=set(args.reason) if args.reason else None,
    )


def _check(args: argparse.Namespace) -> str | None:
    chosen = (
        args.offsets is not None
        or args.partition is not None
        or args.since is not None
        or args.until is not None
        or args.ids
    )
    if not (chosen or args.all or args.dlq):
        return "choose what to replay: --offsets, --since/--until, --ids, --dlq or --all"
    if args.reason and not args.dlq:
        return "--reason applies to --dlq only"
    if args.dlq and (args.model or args.model_version or args.output_topic or args.only_changed):
        return (
            "--dlq re-injects dead letters into the input topic for the live pipeline; "
            "--model, --model-version, --output-topic and --only-changed do not apply"
        )
    if args.rate is not None and args.rate <= 0:
        return "--rate must be positive"
    return None


def check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line, if anything; the CLI asks before it looks for a
    broker, so a mistyped selection is reported as such even with no broker running."""
    problem = _check(args)
    if problem is None:
        try:
            selection_from(args)
        except ValueError as exc:
            problem = str(exc)
    return problem


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.producers.replay import ReplayOptions, replay

    problem = check_arguments(args)
    if problem is not None:
        log.error("%s", problem)
        return 2
    selection = selection_from(args)
    options = ReplayOptions(
        model=args.model,
        model_version=args.model_version,
        output_topic=args.output_topic,
        only_changed=args.only_changed,
        rate=args.rate,
        count=args.count,
        timeout=args.timeout,
        progress=not args.no_progress,
    )
    summary = asyncio.run(replay(settings, selection, options, dlq=args.dlq))
    for line in summary.lines():
        print(line, flush=True)
    if args.json:
        print(json.dumps(summary.as_dict()), flush=True)
    return 0
