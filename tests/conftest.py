"""Shared fixtures. The embedded broker (Tansu over TCP) starts once per session on a free
port; every test gets its own topic names and consumer groups."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deepfake_stream.core.settings import Settings, all_fields, load_settings
from deepfake_stream.embedded_broker import EmbeddedBroker, free_port

TESTS = Path(__file__).parent
# Fixtures that reach a real service: the embedded broker over TCP, or PostgreSQL / the verdict
# store's database. Any test that asks for one (directly or through another fixture) is
# `integration`, wherever its file lives.
SERVICE_FIXTURES = {"kafka_bootstrap", "store_url", "pg_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the tier markers true without relying on each file remembering them:
    tests/chaos/ is `chaos` (and `integration`), tests/integration/ is `integration`, and so is
    every test that uses a service fixture. `slow` stays explicit, where a test is slow."""
    for item in items:
        parts = item.path.relative_to(TESTS).parts if item.path.is_relative_to(TESTS) else ()
        folder = parts[0] if len(parts) > 1 else ""
        if folder == "chaos":
            item.add_marker(pytest.mark.chaos)
        if folder in ("chaos", "integration") or SERVICE_FIXTURES & set(
            getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _verdict_store_off_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Services started by tests (the store and the shim under `up`) keep their default
    SQLite verdict store in this run's temp dir, never in the developer's state directory."""
    import os

    os.environ.setdefault("DATABASE_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session", autouse=True)
def _fast_default_model() -> None:
    """Items without a model_id are scored by tiny-tfidf here, not the shipped default
    (small-fusion, a SmolLM2 pass per window: about 7 texts/s on 2 cores), so the tests that
    push hundreds of items through the pipeline stay fast. The shipped default is tested
    where it is what is under test: tests/unit/test_fusion.py, the registry's default, and
    every registered model through the stream (tests/integration/test_all_detectors.py)."""
    import os

    os.environ.setdefault("MODELS_DEFAULT", "tiny-tfidf")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_file = tmp_path_factory.mktemp("broker") / "tansu.log"
    broker = EmbeddedBroker(port=free_port(), log_file=log_file).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def unique_settings(bootstrap: str, **overrides: Any) -> Settings:
    """Settings with per-test topic names and consumer groups.

    ``overrides`` use ``group__field`` keys, e.g. ``worker__max_batch_size=8``.
    """
    suffix = uuid.uuid4().hex[:8]
    values: dict[tuple[str, str], Any] = {
        ("kafka", "bootstrap_servers"): bootstrap,
        ("kafka", "group_prefix"): f"test-{suffix}",
        ("worker", "heartbeat_interval_s"): 0.5,
        ("worker", "heartbeat_ttl_s"): 3.0,
        ("models", "default"): "tiny-tfidf",  # as _fast_default_model says
    }
    for group, field in all_fields():
        if group == "topics":
            values[(group, field)] = f"{field}-{suffix}"
    for key, value in overrides.items():
        group, field = key.split("__")
        values[(group, field)] = value
    return load_settings(values)


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    return unique_settings(kafka_bootstrap)
