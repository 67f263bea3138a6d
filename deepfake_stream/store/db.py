"""Connecting to the verdict store and migrating it.

``DATABASE_URL`` unset: a SQLite file in the state directory (aiosqlite), created on first
use. ``postgresql://...``: PostgreSQL through asyncpg. Both run the same Alembic migrations
(shipped in ``migrations/``), applied by ``deepfake-stream db upgrade`` and on start of the
store and the shim.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from deepfake_stream.core.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_FILE = "verdicts.sqlite3"
# Any constant works: it only has to be the same in every process that migrates.
_PG_MIGRATION_LOCK = 0x7665726469637473


def state_dir(settings: Settings) -> Path:
    """The project's state directory (XDG), beside ``~/.cache/deepfake-stream`` for models."""
    if settings.database.state_dir:
        return settings.database.state_dir.expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "deepfake-stream"


def database_url(settings: Settings) -> str:
    """The SQLAlchemy URL, with the async driver named (``postgresql://`` -> asyncpg)."""
    raw = settings.database.url.get_secret_value() if settings.database.url else ""
    if not raw:
        folder = state_dir(settings)
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{folder / SQLITE_FILE}"
    url = make_url(raw)
    driver = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
    driver["sqlite"] = "sqlite+aiosqlite"
    if url.drivername in driver:
        url = url.set(drivername=driver[url.drivername])
    return url.render_as_string(hide_password=False)


def redacted_url(settings: Settings) -> str:
    """For logs: never the password."""
    return make_url(database_url(settings)).render_as_string(hide_password=True)


def make_engine(settings: Settings) -> AsyncEngine:
    url = database_url(settings)
    if url.startswith("sqlite"):
        # 30 s busy timeout: the store, the shim's audit writer and `db prune` share the file.
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _wal(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            # WAL: readers (the shim) never block the store's writes, nor the reverse.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_async_engine(
        url,
        pool_pre_ping=True,  # a connection dropped while PostgreSQL was away is replaced
        pool_size=5,
        max_overflow=5,
        connect_args={"timeout": 10, "command_timeout": 60},
    )


def _alembic_config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    if connection.dialect.name == "postgresql":
        # The store and the shim may start together: one migrates, the other waits here.
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
    command.upgrade(_alembic_config(connection), revision)


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, revision)
        return
    # SQLite: the store and the shim start together under `up`; a file lock lets one
    # migrate while the other waits (PostgreSQL uses an advisory lock instead).
    import fcntl

    with open(f"{path}.migrate.lock", "a") as lock:  # noqa: ASYNC230 - a tiny local file
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade, revision)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


async def upgrade_with_retry(
    engine: AsyncEngine, settings: Settings, stop: asyncio.Event | None = None
) -> bool:
    """Migrate, waiting out an unreachable database with bounded back-off (never a crash
    loop). Returns False only when ``stop`` was set first."""
    delay = 0.5
    while True:
        try:
            await upgrade(engine)
            return True
        except Exception as exc:
            log.warning(
                "verdict store %s not ready (%s: %s); retrying in %.1fs",
                redacted_url(settings),
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
                delay,
            )
        if stop is None:
            await asyncio.sleep(delay)
        else:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return False
            except TimeoutError:
                pass
        delay = min(delay * 2, settings.database.connect_retry_max_s)
