"""Verdict-store wiring without a database: DATABASE_URL, the state directory, the CLI,
and `up` running the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepfake_stream.cli import build_parser
from deepfake_stream.commands import up
from deepfake_stream.core.settings import load_settings
from deepfake_stream.store.db import database_url, redacted_url, state_dir


def test_unset_url_is_a_sqlite_file_in_the_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    settings = load_settings()
    assert state_dir(settings) == tmp_path / "xdg" / "deepfake-stream"
    assert (
        database_url(settings)
        == f"sqlite+aiosqlite:///{tmp_path}/xdg/deepfake-stream/verdicts.sqlite3"
    )
    assert (tmp_path / "xdg" / "deepfake-stream").is_dir()  # created on first use
    chosen = load_settings({("database", "state_dir"): str(tmp_path / "s")})
    assert database_url(chosen).endswith(f"{tmp_path}/s/verdicts.sqlite3")


def test_postgresql_urls_use_asyncpg_and_logs_hide_the_password() -> None:
    settings = load_settings({("database", "url"): "postgresql://u:hunter2@db:5432/x"})
    assert database_url(settings) == "postgresql+asyncpg://u:hunter2@db:5432/x"
    assert "hunter2" not in redacted_url(settings)
    assert "hunter2" not in repr(settings)  # a SecretStr


def test_cli_offers_store_db_and_verdicts() -> None:
    parser, modules = build_parser()
    assert {"store", "db", "verdicts"} <= set(modules)
    assert parser.parse_args(["db", "upgrade"]).action == "upgrade"
    args = parser.parse_args(["verdicts", "export", "--since", "2026-12-01", "--format", "csv"])
    assert args.target == "export" and args.since.year == 2026 and args.format == "csv"
    args = parser.parse_args(["store", "--count", "5", "--database-url", "sqlite:///x"])
    assert args.count == 5 and args.setting__database__url == "sqlite:///x"


def test_up_runs_the_store_with_its_standalone_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up, "_gpu_present", lambda: False)
    monkeypatch.setattr(up, "_modal_configured", lambda: False)
    children = {c.role: c for c in up._children(load_settings())}
    assert "deepfake-stream store" in " ".join(children["store"].command)
