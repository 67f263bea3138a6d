"""Topic definitions (deepfake_stream/topics.yaml) and creating the missing topics.

The YAML is the one source of truth for partitions, replication and configs.
:func:`ensure_topics` creates what is missing on the cluster the settings point at, fitting the
replication factor to the brokers that exist (so one embedded broker works), and never alters an
existing topic.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from deepfake_stream.core.errors import ConfigError
from deepfake_stream.core.settings import Settings, TopicSettings

__all__ = [
    "DEFAULT_TOPICS_FILE",
    "TopicDefinition",
    "TopicPlan",
    "ensure_topics",
    "fit_to_cluster",
    "kafka_cli_lines",
    "load_topic_definitions",
    "plan_topics",
]

log = logging.getLogger(__name__)

DEFAULT_TOPICS_FILE = Path(__file__).with_name("topics.yaml")

# TopicSettings fields that name a topic (the rest, like `partitions`, are not names).
_NAME_FIELDS = frozenset(
    name for name, info in TopicSettings.model_fields.items() if info.annotation is str
)
_TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code


@dataclass(frozen=True, kw_only=True)
class TopicDefinition:
    """One topic of topics.yaml, with the defaults merged in."""

    name: str
    setting: str
    """The TopicSettings field that renames this topic (TOPIC_<SETTING>)."""
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TopicPlan:
    """A definition as it would be created, and whether the topic already exists."""

    definition: TopicDefinition
    exists: bool | None
    """None when the cluster could not be asked."""
    actual_partitions: int | None = None


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a positive integer, got {value!r}")
    return value


def _configs(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: configs must be a mapping")
    out: dict[str, str] = {}
    for key, value in raw.items():
        # Integers are harmless to stringify; booleans and floats are not (True -> "True").
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ConfigError(f"{where}: config {key} must be a quoted string, got {value!r}")
        out[str(key)] = str(value)
    return out


def load_topic_definitions(
    path: Path | str | None = None, *, topics: TopicSettings | None = None
) -> list[TopicDefinition]:
    """Read the topic definitions; with ``topics``, names follow its renames (TOPIC_*)."""
    path = Path(path) if path else DEFAULT_TOPICS_FILE
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"topic definitions {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    defaults = doc.get("defaults") or {}
    default_configs = _configs(defaults.get("configs") or {}, f"{path}: defaults")
    out: list[TopicDefinition] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc.get("topics") or []):
        where = f"{path}: topics[{i}]"
        name, setting = raw.get("name"), raw.get("setting")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: name is required")
        if setting not in _NAME_FIELDS:
            raise ConfigError(
                f"{where} ({name}): setting must be one of {sorted(_NAME_FIELDS)}, got {setting!r}"
            )
        if setting in seen:
            raise ConfigError(f"{where} ({name}): setting {setting!r} is defined twice")
        seen.add(setting)
        if topics is not None:
            name = getattr(topics, setting)
        out.append(
            TopicDefinition(
                name=name,
                setting=setting,
                partitions=_positive_int(
                    raw.get("partitions", defaults.get("partitions", 1)), f"{where} partitions"
                ),
                replication_factor=_positive_int(
                    raw.get("replication_factor", defaults.get("replication_factor", 1)),
                    f"{where} replication_factor",
                ),
                configs={**default_configs, **_configs(raw.get("configs") or {}, where)},
            )
        )
    return out


def fit_to_cluster(
    definition: TopicDefinition,
    *,
    brokers: int,
    replication_factor: int | None = None,
    partitions: int | None = None,
) -> TopicDefinition:
    """The definition as it can be created on a cluster of ``brokers`` brokers.

    The replication factor cannot exceed the broker count, and min.insync.replicas above the
    replication factor would make every acks=all write fail, so both are lowered to fit.
    """
    rf = min(replication_factor or definition.replication_factor, max(brokers, 1))
    configs = dict(definition.configs)
    if "min.insync.replicas" in configs:
        configs["min.insync.replicas"] = str(min(int(configs["min.insync.replicas"]), rf))
    return replace(
        definition,
        replication_factor=rf,
        partitions=partitions or definition.partitions,
        configs=configs,
    )


def kafka_cli_lines(
    definitions: list[TopicDefinition], *, replication_factor: int | None = None
) -> list[str]:
    """Equivalent ``kafka-topics.sh`` commands, for operators without Python.

    They read the bootstrap address from ``$BOOTSTRAP`` (and, for SASL/SSL clusters, client
    properties from ``$KAFKA_COMMAND_CONFIG``, see kafka-topics.sh --command-config).
    """
    lines = []
    for d in definitions:
        parts = [
            "kafka-topics.sh",
            '--bootstrap-server "$BOOTSTRAP"',
            '${KAFKA_COMMAND_CONFIG:+--command-config "$KAFKA_COMMAND_CONFIG"}',
            "--create --if-not-exists",
            f"--topic {shlex.quote(d.name)}",
            f"--partitions {d.partitions}",
            f"--replication-factor {replication_factor or d.replication_factor}",
        ]
        parts += [f"--config {shlex.quote(f'{k}={v}')}" for k, v in sorted(d.configs.items())]
        lines.append(" ".join(parts))
    return lines


def _admin_client(settings: Settings) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    from deepfake_stream.core.kafka import client_kwargs

    kwargs = client_kwargs(settings, role="topics")
    # client_kwargs serves producers and consumers too; pass only what the admin client takes.
    accepted = inspect.signature(AIOKafkaAdminClient).parameters
    return AIOKafkaAdminClient(**{k: v for k, v in kwargs.items() if k in accepted})


async def _start(admin: Any, timeout_s: float) -> None:
    """Start the admin client, retrying while the broker is still coming up."""
    from aiokafka.errors import KafkaConnectionError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.2
    while True:
        try:
            await admin.start()
            return
        except KafkaConnectionError:
            if loop.time() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _cluster_state(admin: Any) -> tuple[int, dict[str, int]]:
    """Broker count and partitions per existing topic.

    Asks for all topics on purpose: a metadata request naming a missing topic would, on a
    broker with auto.create.topics.enable, create it with the broker's defaults (aiokafka sends
    allow_auto_topic_creation=true).
    """
    brokers = len((await admin.describe_cluster()).get("brokers") or [])
    existing = {
        t["topic"]: len(t["partitions"])
        for t in await admin.describe_topics(None)
        if t.get("error_code", 0) == 0
    }
    return brokers, existing


async def plan_topics(
    settings: Settings,
    definitions: list[TopicDefinition] | None = None,
    *,
    timeout_s: float = 10.0,
) -> tuple[list[TopicPlan], int]:
    """Which defined topics exist on the cluster, and how many brokers it has."""
    definitions = definitions or load_topic_definitions(topics=settings.topics)
    admin = _admin_client(settings)
    try:
        await _start(admin, timeout_s)
        brokers, existing = await _cluster_state(admin)
    finally:
        await admin.close()
    plans = [
        TopicPlan(definition=d, exists=d.name in existing, actual_partitions=existing.get(d.name))
        for d in definitions
    ]
    return plans, brokers


async def ensure_topics(
    settings: Settings,
    *,
    replication_factor: int | None = None,
    partitions_override: int | None = None,
    definitions: list[TopicDefinition] | None = None,
    path: Path | str | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the defined topics that are missing; return the names created.

    Idempotent: existing topics are left as they are (a partition count that differs from the
    definition is logged), and a topic created concurrently by another process is not an error.
    """
    from aiokafka.admin import NewTopic

    if definitions is None:
        definitions = load_topic_definitions(path, topics=settings.topics)
    admin = _admin_client(settings)
    try:
        await _start(admin, timeout_s)
        brokers, existing = await _cluster_state(admin)
        missing = []
        for d in definitions:
            if d.name in existing:
                if existing[d.name] != (partitions_override or d.partitions):
                    log.warning(
                        "topic %s exists with %d partitions (defined: %d); left as it is",
                        d.name,
                        existing[d.name],
                        partitions_override or d.partitions,
                    )
                continue
            missing.append(
                fit_to_cluster(
                    d,
                    brokers=brokers,
                    replication_factor=replication_factor,
                    partitions=partitions_override,
                )
            )
        if not missing:
            log.info("all %d topics exist", len(definitions))
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    name=d.name,
                    num_partitions=d.partitions,
                    replication_factor=d.replication_factor,
                    topic_configs=d.configs,
                )
                for d in missing
            ]
        )
    finally:
        await admin.close()
    created: list[str] = []
    failures: list[str] = []
    by_name = {d.name: d for d in missing}
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code == 0:
            d = by_name[name]
            created.append(name)
            log.info(
                "created topic %s (partitions=%d, replication_factor=%d)",
                name,
                d.partitions,
                d.replication_factor,
            )
        elif code != _TOPIC_ALREADY_EXISTS:
            failures.append(f"{name}: error {code} {message or ''}".strip())
    if failures:
        raise ConfigError("could not create topics: " + "; ".join(failures))
    return created
