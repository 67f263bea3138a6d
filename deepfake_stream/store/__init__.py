"""The verdict store: verdicts, dead letters and the shim's audit log in SQL."""

from deepfake_stream.store.db import database_url, make_engine, upgrade

__all__ = ["database_url", "make_engine", "upgrade"]
