"""docker-compose.yml, Dockerfile and .dockerignore, checked by construction (no Docker here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from deepfake_stream.cli import COMMANDS, build_parser
from deepfake_stream.core.settings import all_fields, env_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
INFRA = {"kafka", "redis", "postgres"}
APP = {name: svc for name, svc in SERVICES.items() if name not in INFRA}
# Read by Modal's own client, not by our settings.
PASSTHROUGH = {"MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"}
SETTING_ENVS = {env_name(group, field) for group, field in all_fields()}

# Each app service runs exactly its standalone command (what `up` runs as a child).
EXPECTED_COMMANDS = {
    "topics": ["topics", "--apply"],
    "router": ["router"],
    "cpu-worker": ["worker", "--backend", "cpu"],
    "gpu-worker": ["worker", "--backend", "gpu"],
    "modal-bridge": ["modal-bridge"],
    "shim": ["shim"],
    "store": ["store"],
}


def env_of(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def test_core_services_exist() -> None:
    assert set(SERVICES) >= INFRA | set(EXPECTED_COMMANDS)


def test_kafka_is_single_node_kraft() -> None:
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = {k: str(v) for k, v in env_of(kafka).items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:9093"
    assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics come from topics.yaml
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= 4_194_304
    test = kafka["healthcheck"]["test"]
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in test
    assert "localhost:9092" in test


def test_redis_has_a_ping_healthcheck() -> None:
    redis = SERVICES["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_images_are_strings() -> None:
    for name, svc in SERVICES.items():
        assert isinstance(svc.get("image"), str) and svc["image"], name


@pytest.mark.parametrize(("name", "command"), sorted(EXPECTED_COMMANDS.items()))
def test_commands_are_the_standalone_commands(name: str, command: list[str]) -> None:
    assert SERVICES[name]["command"] == command
    assert command[0] in COMMANDS


def test_commands_parse_with_the_real_cli() -> None:
    parser, modules = build_parser()
    for name, svc in APP.items():
        if svc["command"][0] not in modules:
            continue  # that command's module is not built yet
        args = parser.parse_args(svc["command"])
        assert args.command == svc["command"][0], name


def test_two_cpu_workers() -> None:
    worker = SERVICES["cpu-worker"]
    assert worker["deploy"]["replicas"] == 2
    # Replicas cannot share a fixed name or host port.
    assert "container_name" not in worker
    assert "ports" not in worker


def test_app_environment_uses_real_setting_names() -> None:
    for name, svc in APP.items():
        unknown = set(env_of(svc)) - SETTING_ENVS - PASSTHROUGH
        assert not unknown, f"{name}: {sorted(unknown)} are not settings"


def test_app_services_point_at_the_compose_kafka_and_redis() -> None:
    kafka_ports = {
        listener.rsplit(":", 1)[1]
        for listener in env_of(SERVICES["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split(",")
        if listener.startswith("PLAINTEXT://kafka:")
    }
    for name, svc in APP.items():
        env = env_of(svc)
        host, port = env["KAFKA_BOOTSTRAP_SERVERS"].split(":")
        assert host == "kafka" and port in kafka_ports, name
        assert env["REDIS_URL"].startswith("redis://redis:6379"), name


def test_app_services_wait_for_kafka_and_topics() -> None:
    for name, svc in APP.items():
        deps = svc["depends_on"]
        assert deps["kafka"] == {"condition": "service_healthy"}, name
        if name != "topics":
            assert deps["topics"] == {"condition": "service_completed_successfully"}, name
    assert "topics" not in SERVICES["topics"]["depends_on"]


def test_restart_policies() -> None:
    assert SERVICES["topics"]["restart"] == "no"  # one-shot
    for name, svc in SERVICES.items():
        if name != "topics":
            assert svc["restart"] == "unless-stopped", name


def test_long_running_app_services_have_healthchecks() -> None:
    for name, svc in APP.items():
        if name == "topics":
            continue
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD", name
        # The pattern names the service's own sub-command.
        assert re.search(rf"deepfake-stream {re.escape(svc['command'][0])}\b", test[-1]), name


def test_stop_grace_exceeds_drain_grace() -> None:
    for name, svc in APP.items():
        grace = float(env_of(svc).get("WORKER_SHUTDOWN_GRACE_S", 20))
        assert int(svc["stop_grace_period"].rstrip("s")) > grace, name


def test_optional_services_sit_behind_profiles() -> None:
    assert SERVICES["gpu-worker"]["profiles"] == ["gpu"]
    assert SERVICES["modal-bridge"]["profiles"] == ["modal"]
    devices = SERVICES["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    modal_env = env_of(SERVICES["modal-bridge"])
    assert {"MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"} <= set(modal_env)
    # No value: passed through from the host, never written in the file.
    assert modal_env["MODAL_TOKEN_ID"] is None and modal_env["MODAL_TOKEN_SECRET"] is None
    for name in set(EXPECTED_COMMANDS) - {"gpu-worker", "modal-bridge"}:
        assert "profiles" not in SERVICES[name], name


def test_shim_listens_publicly_only_with_api_keys() -> None:
    shim = SERVICES["shim"]
    env = env_of(shim)
    assert env["HTTP_HOST"] == "0.0.0.0"
    assert str(env["HTTP_PORT"]) == "8080"
    assert env["DETECT_API_KEYS"].startswith("${DETECT_API_KEYS:?")
    assert any(str(p).endswith(":8080") for p in shim["ports"])


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    assert "download.pytorch.org/whl/cpu" in text
    assert '"torch==${TORCH_VERSION}"' in text and "ARG TORCH_VERSION=2.13.0" in text
    assert re.search(r"^USER (?!root)\S+$", text, re.M), "the image must not run as root"
    assert 'ENTRYPOINT ["deepfake-stream"]' in text
    assert "procps" in text  # pgrep, used by the healthchecks
    # Every package that pyproject installs is copied into the image.
    for package in ("deepfake_stream", "consumers", "producers", "routing", "models", "schemas"):
        assert f"COPY {package} " in text, package


def test_dockerignore_keeps_secrets_and_environments_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env"} <= ignored
    for needed in ("deepfake_stream", "routing", "models", "pyproject.toml", "README.md"):
        assert needed not in ignored


def test_store_and_shim_use_the_compose_postgres() -> None:
    pg = SERVICES["postgres"]
    assert pg["image"].startswith("postgres:")
    assert pg["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "pg_isready" in pg["healthcheck"]["test"]
    assert "ports" not in pg  # reachable from the compose network only
    for name in ("store", "shim"):
        url = env_of(SERVICES[name])["DATABASE_URL"]
        assert (
            url.startswith("postgresql://deepfake:${POSTGRES_PASSWORD") and "@postgres:5432/" in url
        )
    assert SERVICES["store"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    # The scoring path never waits for the database.
    for name in ("router", "cpu-worker"):
        assert "postgres" not in SERVICES[name]["depends_on"], name
        assert "DATABASE_URL" not in env_of(SERVICES[name]), name
