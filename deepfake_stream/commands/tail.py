"""Print verdicts from detect.verdicts as they arrive (or, with --dlq, dead letters from
detect.dlq with their dlq.* headers). By default only messages that arrive after it starts;
--from-beginning prints the retained history first. Reads without a consumer group and
commits nothing, so it never disturbs the moderation systems' consumers."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import TYPE_CHECKING

from deepfake_stream.core.settings import Settings

if TYPE_CHECKING:  # imported where used: a command loads only what it runs
    from deepfake_stream.core.reader import Arrival

HELP = "print verdicts (or --dlq dead letters) as they arrive"
SETTINGS = ("kafka", "topics")
EXAMPLES = """\
  deepfake-stream tail
  deepfake-stream tail --dlq --from-beginning
  deepfake-stream tail --json --count 10 --timeout 30 --topic-verdicts detect.verdicts
"""
log = logging.getLogger("deepfake_stream.tail")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dlq", action="store_true", help="print dead letters instead")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest retained message (default: only new ones)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--count", type=int, default=None, help="stop after N messages")
    parser.add_argument("--timeout", type=float, default=None, help="stop after N seconds")


def _line(arrival: Arrival, dlq: bool, as_json: bool) -> str:
    if dlq:
        doc = {
            "key": arrival.key,
            "headers": arrival.headers,
            "value": arrival.value.decode("utf-8", "replace")[:200],
        }
        if as_json:
            return json.dumps(doc, ensure_ascii=False)
        h = arrival.headers
        return (
            f"{arrival.key or '-':<24} {h.get('dlq.reason', '?'):<20} "
            f"{h.get('dlq.stage', '?'):<7} {h.get('dlq.error.message', '')[:100]}"
        )
    try:
        v = arrival.json()
    except ValueError:
        return f"(not JSON at offset {arrival.offset})"
    if as_json:
        return json.dumps(v, ensure_ascii=False)
    return (
        f"{v.get('id', '?'):<24} {v.get('label', '?'):<5} score={v.get('score', 0):.3f} "
        f"model={v.get('model_id')} backend={v.get('backend')} "
        f"batch={v.get('batch_size')} latency={v.get('latency_ms', 0):.0f}ms"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.core.reader import read_topic

    topic = settings.topics.dlq if args.dlq else settings.topics.verdicts

    async def main() -> None:
        async for arrival in read_topic(
            settings,
            topic,
            from_beginning=args.from_beginning,
            count=args.count,
            timeout=args.timeout,
            on_ready=lambda: log.info(
                "reading %s at %s %s",
                topic,
                settings.kafka.bootstrap_servers,
                "from the oldest retained message"
                if args.from_beginning
                else "from now on (--from-beginning for older messages)",
            ),
        ):
            print(_line(arrival, args.dlq, args.json), flush=True)

    try:
        asyncio.run(main())
    except BrokenPipeError:  # `tail | head` is fine
        sys.stderr.close()
    return 0
