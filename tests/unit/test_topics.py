"""Topic definitions, the kafka-topics.sh rendering and ensure_topics' logic (fake admin)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from deepfake_stream.cli import main
from deepfake_stream.core import topics as topics_mod
from deepfake_stream.core.errors import ConfigError
from deepfake_stream.core.settings import KafkaSettings, Settings, TopicSettings
from deepfake_stream.core.topics import (
    DEFAULT_TOPICS_FILE,
    TopicDefinition,
    ensure_topics,
    fit_to_cluster,
    kafka_cli_lines,
    load_topic_definitions,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_COPY = ROOT / "deploy" / "kafka" / "topics.yaml"
SCRIPT = ROOT / "deploy" / "kafka" / "create-topics.sh"
NAME_FIELDS = {f for f, info in TopicSettings.model_fields.items() if info.annotation is str}
DAY_MS = 86_400_000


def by_setting() -> dict[str, TopicDefinition]:
    return {d.setting: d for d in load_topic_definitions()}


def test_every_topic_setting_is_defined_once_with_its_default_name() -> None:
    defs = load_topic_definitions()
    assert sorted(d.setting for d in defs) == sorted(NAME_FIELDS)
    defaults = TopicSettings.model_construct()  # defaults, whatever the environment says
    for d in defs:
        assert d.name == getattr(defaults, d.setting)


def test_contract_topics_are_all_there() -> None:
    names = {d.name for d in load_topic_definitions()}
    assert names >= {
        "detect.in",
        "detect.backend.cpu",
        "detect.backend.gpu",
        "detect.backend.modal",
        "detect.verdicts",
        "detect.dlq",
        "detect.heartbeats",
    }


def test_package_copy_and_deploy_copy_are_identical() -> None:
    assert DEFAULT_TOPICS_FILE.parent.name == "core"
    assert not DEPLOY_COPY.is_symlink()
    assert DEPLOY_COPY.read_bytes() == DEFAULT_TOPICS_FILE.read_bytes(), (
        "deploy/kafka/topics.yaml differs from deepfake_stream/core/topics.yaml: "
        "cp deepfake_stream/core/topics.yaml deploy/kafka/topics.yaml"
    )


def test_topics_yaml_ships_as_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["deepfake_stream.core"]
    assert any(pattern in ("topics.yaml", "*.yaml") for pattern in data)


def test_raw_config_values_are_strings() -> None:
    doc = yaml.safe_load(DEFAULT_TOPICS_FILE.read_text())
    blocks = [doc["defaults"]["configs"]] + [t.get("configs", {}) for t in doc["topics"]]
    for block in blocks:
        for key, value in block.items():
            assert isinstance(value, str), f"{key}: {value!r} must be a quoted string"


def test_item_topics_accept_the_largest_request() -> None:
    limit = KafkaSettings.model_fields["max_request_bytes"].default
    for d in load_topic_definitions():
        if d.setting == "heartbeats":
            continue
        assert int(d.configs["max.message.bytes"]) >= limit, d.name
        # A 100,000-character text is up to 400 KB of UTF-8.
        assert int(d.configs["max.message.bytes"]) > 400_000


def test_durability_settings() -> None:
    for d in load_topic_definitions():
        assert d.replication_factor >= 3, d.name
        min_isr = int(d.configs["min.insync.replicas"])
        # acks=all needs two copies, and one broker may still fail without blocking writes.
        assert 2 <= min_isr < d.replication_factor, d.name
        assert d.configs["unclean.leader.election.enable"] == "false"
        assert d.partitions >= 1


def test_retention_choices() -> None:
    t = by_setting()
    assert int(t["input"].configs["retention.ms"]) >= 7 * DAY_MS  # replay window
    assert int(t["dlq"].configs["retention.ms"]) > int(t["input"].configs["retention.ms"])
    assert int(t["verdicts"].configs["retention.ms"]) >= 7 * DAY_MS
    hb = t["heartbeats"]
    assert hb.configs["cleanup.policy"] == "delete"
    assert int(hb.configs["retention.ms"]) <= 3_600_000
    # Retention deletes closed segments only: the segment must roll well within retention.
    assert int(hb.configs["segment.ms"]) < int(hb.configs["retention.ms"])
    for d in t.values():
        assert d.configs["cleanup.policy"] in {"delete", "compact", "compact,delete"}


def test_names_follow_topic_settings() -> None:
    renamed = TopicSettings.model_construct(
        **{**TopicSettings.model_construct().model_dump(), "input": "acme.in", "dlq": "acme.dlq"}
    )
    names = {d.setting: d.name for d in load_topic_definitions(topics=renamed)}
    assert names["input"] == "acme.in"
    assert names["dlq"] == "acme.dlq"
    assert names["verdicts"] == "detect.verdicts"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("topics: [{name: a, setting: nope}]", "setting must be one of"),
        ("topics: [{name: a, setting: input, configs: {x: true}}]", "quoted string"),
        ("topics: [{name: a, setting: input, partitions: 0}]", "positive integer"),
        ("topics: [{name: a, setting: input}, {name: b, setting: input}]", "defined twice"),
        ("topics: [{setting: input}]", "name is required"),
    ],
)
def test_invalid_definitions_are_rejected(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_topic_definitions(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_topic_definitions(tmp_path / "absent.yaml")


def test_fit_to_cluster_lowers_replication_and_min_isr() -> None:
    d = by_setting()["input"]
    one = fit_to_cluster(d, brokers=1)
    assert (one.replication_factor, one.configs["min.insync.replicas"]) == (1, "1")
    assert one.partitions == d.partitions
    big = fit_to_cluster(d, brokers=5)
    assert big.replication_factor == d.replication_factor
    assert big.configs["min.insync.replicas"] == d.configs["min.insync.replicas"]
    forced = fit_to_cluster(d, brokers=5, replication_factor=2, partitions=4)
    assert (forced.replication_factor, forced.partitions) == (2, 4)
    assert d.replication_factor == 3  # the definition itself is untouched


def test_script_comment_matches_generated_kafka_cli() -> None:
    text = SCRIPT.read_text()
    block = text.split("# --- kafka-topics.sh equivalent ---\n")[1].split("# --- end ---")[0]
    commented = [line.removeprefix("# ") for line in block.splitlines()]
    expected = kafka_cli_lines(load_topic_definitions())
    assert [line for line in commented if line.startswith("kafka-topics.sh")] == expected, (
        "regenerate the block in deploy/kafka/create-topics.sh with "
        "`deepfake-stream topics --print-kafka-cli`"
    )


def test_script_applies_through_the_cli() -> None:
    text = SCRIPT.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert 'exec deepfake-stream topics --apply "$@"' in text
    assert SCRIPT.stat().st_mode & 0o111, "create-topics.sh must be executable"


def test_kafka_cli_lines_carry_every_setting() -> None:
    d = by_setting()["dlq"]
    (line,) = kafka_cli_lines([d])
    assert "--create --if-not-exists" in line
    assert f"--topic {d.name} " in line
    assert f"--partitions {d.partitions} " in line
    assert f"--replication-factor {d.replication_factor} " in line
    for key, value in d.configs.items():
        assert f"--config {key}={value}" in line


def test_print_kafka_cli_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # main() installs its own log handler on the root logger; keep pytest's.
    monkeypatch.setattr("deepfake_stream.cli.setup_logging", lambda *a, **k: None)
    assert main(["topics", "--print-kafka-cli", "--replication-factor", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "#!/bin/sh"
    assert out[1].startswith('BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-')
    assert len(out) == 2 + len(NAME_FIELDS)
    assert all("--replication-factor 2 " in line for line in out[2:])


# --- ensure_topics against a fake admin client -------------------------------------------


class FakeAdmin:
    def __init__(self, *, brokers: int, existing: dict[str, int], errors: dict[str, int]) -> None:
        self.brokers = brokers
        self.existing = dict(existing)
        self.errors = errors
        self.created: list[Any] = []
        self.closed = False

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True

    async def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"node_id": i} for i in range(self.brokers)]}

    async def describe_topics(self, topics: list[str] | None = None) -> list[dict[str, Any]]:
        # ensure_topics must list all topics: naming a missing one may auto-create it.
        assert topics is None
        return [
            {"topic": name, "error_code": 0, "partitions": [{}] * n}
            for name, n in self.existing.items()
        ]

    async def create_topics(self, new_topics: list[Any]) -> Any:
        self.created.extend(new_topics)
        return SimpleNamespace(
            topic_errors=[(t.name, self.errors.get(t.name, 0), None) for t in new_topics]
        )


@pytest.fixture
def fake_admin(monkeypatch: pytest.MonkeyPatch):
    def install(**kwargs: Any) -> FakeAdmin:
        admin = FakeAdmin(**{"brokers": 1, "existing": {}, "errors": {}, **kwargs})
        monkeypatch.setattr(topics_mod, "_admin_client", lambda settings: admin)
        return admin

    return install


async def test_ensure_topics_creates_only_missing_topics_fitted_to_the_cluster(fake_admin):
    admin = fake_admin(existing={"detect.in": 12})
    created = await ensure_topics(Settings())
    assert "detect.in" not in created
    assert set(created) == {d.name for d in load_topic_definitions()} - {"detect.in"}
    for t in admin.created:
        assert t.replication_factor == 1
        assert t.topic_configs["min.insync.replicas"] == "1"
        assert all(isinstance(v, str) for v in t.topic_configs.values())
    assert admin.closed


async def test_ensure_topics_is_idempotent_and_tolerates_races(fake_admin):
    admin = fake_admin(brokers=3, errors={"detect.dlq": 36})  # TopicAlreadyExists
    created = await ensure_topics(Settings(), partitions_override=2)
    assert "detect.dlq" not in created
    assert {t.num_partitions for t in admin.created} == {2}
    assert {t.replication_factor for t in admin.created} == {3}

    admin = fake_admin(existing={d.name: d.partitions for d in load_topic_definitions()})
    assert await ensure_topics(Settings()) == []
    assert admin.created == []


async def test_ensure_topics_reports_real_failures(fake_admin):
    fake_admin(errors={"detect.in": 42})  # InvalidRequest
    with pytest.raises(ConfigError, match=r"detect\.in: error 42"):
        await ensure_topics(Settings())
