"""ensure_topics and `deepfake-stream topics` against the embedded broker (Tansu over TCP)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from deepfake_stream.cli import main
from deepfake_stream.core.settings import Settings, TopicSettings, load_settings
from deepfake_stream.core.topics import ensure_topics, load_topic_definitions

pytestmark = pytest.mark.integration

TOPIC_FIELDS = [f for f, info in TopicSettings.model_fields.items() if info.annotation is str]


def unique_settings(bootstrap: str) -> Settings:
    """Settings whose every topic name is new to the (session-wide) broker."""
    suffix = uuid.uuid4().hex[:8]
    overrides: dict[tuple[str, str], Any] = {("kafka", "bootstrap_servers"): bootstrap}
    overrides |= {("topics", f): f"topics-it-{f}-{suffix}" for f in TOPIC_FIELDS}
    return load_settings(overrides)


async def partitions_on_broker(settings: Settings, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        return {
            t["topic"]: len(t["partitions"])
            for t in await admin.describe_topics(None)
            if t["topic"] in names and t["error_code"] == 0
        }
    finally:
        await admin.close()


async def test_ensure_topics_creates_every_topic_once(settings: Settings) -> None:
    definitions = load_topic_definitions(topics=settings.topics)
    names = [d.name for d in definitions]

    created = await ensure_topics(settings)
    assert sorted(created) == sorted(names)
    assert await partitions_on_broker(settings, names) == {
        d.name: d.partitions for d in definitions
    }

    # Idempotent: a second run (another service starting) creates nothing and does not fail.
    assert await ensure_topics(settings) == []
    assert len(await partitions_on_broker(settings, names)) == len(names)


async def test_partitions_override_and_replication_clamp(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap)
    names = [d.name for d in load_topic_definitions(topics=settings.topics)]
    # RF 3 from the file and asked for explicitly: one broker, so it is lowered to 1.
    created = await ensure_topics(settings, replication_factor=3, partitions_override=2)
    assert sorted(created) == sorted(names)
    assert set((await partitions_on_broker(settings, names)).values()) == {2}


def test_topics_command_plans_then_applies(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # main() installs its own log handler on the root logger; keep pytest's.
    monkeypatch.setattr("deepfake_stream.cli.setup_logging", lambda *a, **k: None)
    settings = unique_settings(kafka_bootstrap)
    flags = ["--kafka-bootstrap-servers", kafka_bootstrap]
    for field in TOPIC_FIELDS:
        flags += [f"--topic-{field.replace('_', '-')}", getattr(settings.topics, field)]

    assert main(["topics", *flags]) == 0
    plan = capsys.readouterr().out
    assert "1 broker(s)" in plan and "7 missing" in plan
    assert settings.topics.input in plan

    assert main(["topics", "--apply", *flags]) == 0
    assert "created 7 topic(s)" in capsys.readouterr().out

    assert main(["topics", *flags]) == 0
    assert "0 missing" in capsys.readouterr().out
