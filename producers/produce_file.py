"""Publish a JSONL file of input items, with a progress bar and an optional rate ceiling."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from deepfake_stream.core.errors import InvalidInput
from deepfake_stream.core.settings import Settings
from deepfake_stream.producers.client import DetectProducer

log = logging.getLogger(__name__)


@dataclass
class ProduceReport:
    sent: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield n, line


async def produce_file(
    settings: Settings,
    path: Path,
    *,
    rate: float | None = None,
    raw: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> ProduceReport:
    report = ProduceReport()
    total = sum(1 for _ in read_lines(path))
    if limit is not None:
        total = min(total, limit)
    started = time.monotonic()
    async with DetectProducer(settings=settings) as producer:
        with tqdm(
            total=total, unit="item", desc=f"produce {path.name}", disable=not progress
        ) as bar:
            for n, line in read_lines(path):
                if limit is not None and report.sent + len(report.skipped) >= limit:
                    break
                if rate:  # pace to the ceiling; never burst above it
                    ahead = (report.sent / rate) - (time.monotonic() - started)
                    if ahead > 0:
                        await producer.flush()
                        await asyncio.sleep(ahead)
                if raw:
                    await producer.send_raw(line, key=_key_of(line))
                else:
                    try:
                        item = producer.validate(line)
                    except InvalidInput as exc:
                        report.skipped.append((n, f"{exc.reason}: {exc}"))
                        bar.update(1)
                        continue
                    await producer.send_item(item)
                report.sent += 1
                bar.update(1)
    report.seconds = time.monotonic() - started
    return report


def _key_of(line: bytes) -> bytes | None:
    try:
        doc = json.loads(line)
        return str(doc["id"]).encode() if isinstance(doc, dict) and "id" in doc else None
    except (ValueError, UnicodeDecodeError):
        return None
