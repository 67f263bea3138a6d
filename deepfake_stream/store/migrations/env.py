"""Alembic environment: run by ``deepfake_stream.store.db.upgrade`` with an open connection
(``config.attributes["connection"]``); there is no alembic.ini to keep in sync."""

from __future__ import annotations

from alembic import context

from deepfake_stream.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `deepfake-stream db upgrade`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
