"""The verdict store's database: `db upgrade` applies the migrations (an empty database or
one at an earlier revision), `db prune` deletes verdicts, dead letters and audit rows past
DATABASE_VERDICT_RETENTION_DAYS / DATABASE_AUDIT_RETENTION_DAYS, `db current` prints the
revision."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from deepfake_stream.core.settings import Settings

HELP = "verdict store database: upgrade (migrate), prune (retention), current (revision)"
SETTINGS = ("database",)
EXAMPLES = """\
  deepfake-stream db upgrade
  deepfake-stream db prune --database-verdict-retention-days 30
  deepfake-stream db current --database-url postgresql://postgres@127.0.0.1:5432/verdicts
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["upgrade", "prune", "current"])
    parser.add_argument(
        "--revision", default="head", help="upgrade target (default: head, the latest)"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.store import db
    from deepfake_stream.store.service import prune_once

    async def main() -> int:
        engine = db.make_engine(settings)
        try:
            if args.action == "upgrade":
                before = await db.current_revision(engine)
                await db.upgrade(engine, args.revision)
                after = await db.current_revision(engine)
                print(f"{db.redacted_url(settings)}: {before or 'empty'} -> {after}")
            elif args.action == "prune":
                print(json.dumps(await prune_once(engine, settings)))
            else:
                print(await db.current_revision(engine) or "empty")
            return 0
        finally:
            await engine.dispose()

    return run_against_store(settings, main)


def run_against_store(settings: Settings, main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``main``; an unreachable or refusing database is one log line saying what was
    tried and what to do, and exit 2 (as a missing broker is), not a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    from deepfake_stream.store.db import redacted_url

    try:
        return asyncio.run(main())
    except (OSError, SQLAlchemyError) as exc:
        logging.getLogger("deepfake_stream.db").error(
            "verdict store %s: %s: %s; start the database there, or set DATABASE_URL "
            "(--database-url) to one that answers (unset: SQLite in the state directory)",
            redacted_url(settings),
            type(exc).__name__,
            str(exc).splitlines()[0][:300] if str(exc) else "",
        )
        return 2
