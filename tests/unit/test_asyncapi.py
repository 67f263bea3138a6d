"""The AsyncAPI document: generated from the code, checked in, and complete."""

from __future__ import annotations

from pathlib import Path

import yaml

from deepfake_stream.asyncapi import asyncapi_document, asyncapi_yaml
from deepfake_stream.cli import main
from deepfake_stream.core.settings import TopicSettings
from deepfake_stream.schemas import DLQ_REASONS, InputItem, RoutedItem, Verdict

CHECKED_IN = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
CONTRACT_TOPICS = [
    "detect.in",
    "detect.backend.cpu",
    "detect.backend.gpu",
    "detect.backend.modal",
    "detect.verdicts",
    "detect.dlq",
]


def test_checked_in_document_is_up_to_date() -> None:
    assert CHECKED_IN.read_text() == asyncapi_yaml(), (
        "docs/asyncapi.yaml is stale: run `deepfake-stream asyncapi --out docs/asyncapi.yaml`"
    )


def test_every_contract_topic_has_a_publish_and_a_consume_channel() -> None:
    doc = yaml.safe_load(CHECKED_IN.read_text())
    assert doc["asyncapi"].startswith("3.")
    addresses: dict[str, set[str]] = {}
    for name, channel in doc["channels"].items():
        addresses.setdefault(channel["address"], set()).add(name.rsplit(":", 1)[1])
    for topic in [*CONTRACT_TOPICS, "detect.heartbeats"]:
        assert addresses.get(topic) == {"publish", "consume"}, topic
    actions = {op["action"] for op in doc["operations"].values()}
    assert actions == {"send", "receive"}


def test_every_message_schema_matches_the_pydantic_models() -> None:
    doc = yaml.safe_load(CHECKED_IN.read_text())
    schemas = doc["components"]["schemas"]
    for model in (InputItem, RoutedItem, Verdict):
        expected = model.model_json_schema()
        assert set(schemas[model.__name__]["properties"]) == set(expected["properties"])
        assert set(schemas[model.__name__].get("required", [])) == set(expected["required"])
    assert "Heartbeat" in schemas and "RoutingEnvelope" in schemas
    # Each topic's messages carry the right payload.
    payload_of = {}
    for name, message in doc["components"]["messages"].items():
        channel = name.rsplit(":", 1)[0]
        payload_of[doc["channels"][channel]["address"]] = message["payload"]["$ref"]
    assert payload_of["detect.in"].endswith("/InputItem")
    assert payload_of["detect.backend.gpu"].endswith("/RoutedItem")
    assert payload_of["detect.verdicts"].endswith("/Verdict")
    dlq = doc["channels"]["detect.dlq:publish"]["description"]
    assert all(reason in dlq for reason in DLQ_REASONS)
    assert "dlq.original.offset" in dlq


def test_topic_names_follow_settings() -> None:
    doc = asyncapi_document(TopicSettings.model_construct(verdicts="prod.verdicts"))
    assert "prod.verdicts" in {c["address"] for c in doc["channels"].values()}


def test_command_writes_yaml_and_json(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for field in TopicSettings.model_fields:
        monkeypatch.delenv(f"TOPIC_{field.upper()}", raising=False)
    out = tmp_path / "a.yaml"
    assert main(["asyncapi", "--out", str(out)]) == 0
    assert out.read_text() == CHECKED_IN.read_text()
    out_json = tmp_path / "a.json"
    assert main(["asyncapi", "--out", str(out_json)]) == 0
    import json

    assert json.loads(out_json.read_text()) == asyncapi_document()
