"""Show or create the Kafka topics defined in topics.yaml (deploy/kafka/topics.yaml).

Without --apply, prints the plan: each topic with its partitions, replication factor, configs
and whether it already exists on the cluster. With --apply, creates the missing ones (existing
topics are never altered). --print-kafka-cli prints the equivalent kafka-topics.sh commands
for operators without Python, and needs no broker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from aiokafka.errors import KafkaError

from deepfake_stream.core.settings import Settings
from deepfake_stream.core.topics import (
    TopicDefinition,
    ensure_topics,
    fit_to_cluster,
    kafka_cli_lines,
    load_topic_definitions,
    plan_topics,
)

HELP = "show or create (--apply) the Kafka topics on a cluster"
SETTINGS = ("kafka", "topics")
EXAMPLES = """\
  deepfake-stream topics
  deepfake-stream topics --apply --replication-factor 3 --kafka-bootstrap-servers kafka:9092
  deepfake-stream topics --print-kafka-cli > create-topics.sh
"""

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--apply", action="store_true", help="create the missing topics")
    mode.add_argument(
        "--print-kafka-cli",
        action="store_true",
        help="print the equivalent kafka-topics.sh commands instead (no broker needed)",
    )
    parser.add_argument(
        "--file",
        type=Path,
        default=None,
        metavar="PATH",
        help="topic definitions (default: the topics.yaml shipped with the package)",
    )
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=None,
        metavar="N",
        help="replication factor for every topic (default: the file's, capped at the brokers)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=None,
        metavar="N",
        help="partitions for every created topic (default: the file's)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the broker"
    )


def _configs_text(configs: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(configs.items()))


def _print_table(rows: list[list[str]]) -> None:
    header = ["topic", "partitions", "rf", "exists", "configs"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


def _print_kafka_cli(
    settings: Settings, definitions: list[TopicDefinition], rf: int | None
) -> None:
    # A runnable sh script: the bootstrap address comes from the environment when set.
    print("#!/bin/sh")
    print(f'BOOTSTRAP="${{KAFKA_BOOTSTRAP_SERVERS:-{settings.kafka.bootstrap_servers}}}"')
    for line in kafka_cli_lines(definitions, replication_factor=rf):
        print(line)


async def _plan(args: argparse.Namespace, settings: Settings, defs: list[TopicDefinition]) -> int:
    plans, brokers = await plan_topics(settings, defs, timeout_s=args.timeout)
    rows = []
    for p in plans:
        d = fit_to_cluster(
            p.definition,
            brokers=brokers,
            replication_factor=args.replication_factor,
            partitions=args.partitions,
        )
        exists = "no"
        if p.exists:
            exists = "yes"
            if p.actual_partitions != d.partitions:
                exists = f"yes ({p.actual_partitions} partitions)"
        rows.append(
            [d.name, str(d.partitions), str(d.replication_factor), exists, _configs_text(d.configs)]
        )
    print(f"cluster at {settings.kafka.bootstrap_servers}: {brokers} broker(s)")
    _print_table(rows)
    missing = sum(1 for p in plans if not p.exists)
    print(f"{missing} missing" + (": run with --apply to create them" if missing else ""))
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    definitions = load_topic_definitions(args.file, topics=settings.topics)
    if args.print_kafka_cli:
        _print_kafka_cli(settings, definitions, args.replication_factor)
        return 0
    try:
        if not args.apply:
            return asyncio.run(_plan(args, settings, definitions))
        created = asyncio.run(
            ensure_topics(
                settings,
                definitions=definitions,
                replication_factor=args.replication_factor,
                partitions_override=args.partitions,
                timeout_s=args.timeout,
            )
        )
    except (KafkaError, OSError) as exc:  # OSError covers refused connections and timeouts
        log.error("Kafka at %s: %s", settings.kafka.bootstrap_servers, exc or type(exc).__name__)
        return 1
    print(f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else ""))
    return 0
