"""`db upgrade`, `db current`, `db prune`, `verdicts ID` and `verdicts export` as a user runs
them, against a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess

import pytest

from deepfake_stream.store import db
from deepfake_stream.store.writer import StoreHandler
from tests.integration.harness import cli_command
from tests.store_db import db_settings, record, store_url, verdict_doc

__all__ = ["store_url"]
pytestmark = pytest.mark.integration


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cli_command(*args), env=env, capture_output=True, text=True, timeout=120)


async def _seed(url: str) -> None:
    engine = db.make_engine(db_settings(url))
    handler = StoreHandler(engine, verdict_topic="detect.verdicts", dlq_topic="detect.dlq")
    docs = [
        verdict_doc(f"e-{i}", tenant="A", scored_at=f"2020-01-0{1 + i % 3}T10:00:00.000Z")
        for i in range(30)
    ]
    docs.append(verdict_doc("e-0", tenant="A", scored_at="2020-01-05T10:00:00.000Z", replay=True))
    await handler.handle([record(d, offset=i) for i, d in enumerate(docs)])
    await engine.dispose()


def test_db_and_verdicts_commands(store_url: str) -> None:
    up = cli(store_url, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    assert "empty -> 0002" in up.stdout and "@" not in up.stdout.split("->")[0].split("//")[0]
    assert cli(store_url, "db", "current").stdout.strip() == "0002"
    asyncio.run(_seed(store_url))

    history = cli(store_url, "verdicts", "e-0")
    assert history.returncode == 0, history.stderr
    entries = [json.loads(line) for line in history.stdout.splitlines()]
    assert [e["verdict"]["replay"] for e in entries] == [True, False]  # newest first
    assert cli(store_url, "verdicts", "no-such-id").returncode == 1

    jsonl = cli(store_url, "verdicts", "export", "--since", "2020-01-02T00:00:00Z")
    assert jsonl.returncode == 0, jsonl.stderr
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(rows) == 21 and all(r["scored_at"] >= "2020-01-02" for r in rows)
    assert "exported 21 verdicts" in jsonl.stderr and "verdict" in jsonl.stderr  # progress

    out = cli(store_url, "verdicts", "export", "--format", "csv", "--until", "2020-01-02")
    parsed = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(parsed) == 10 and parsed[0]["id"].startswith("e-") and parsed[0]["label"] == "ai"

    pruned = cli(store_url, "db", "prune", "--database-verdict-retention-days", "1")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout.strip().splitlines()[-1])["verdicts"] == 31  # all from 2020
