"""The shim serves the AsyncAPI document generated from the code."""

from __future__ import annotations

from fastapi.testclient import TestClient

from deepfake_stream.asyncapi import asyncapi_document
from deepfake_stream.core.settings import load_settings
from deepfake_stream.shim import create_app


def test_asyncapi_is_served_without_a_key_and_names_every_topic() -> None:
    settings = load_settings({("api", "api_keys"): "k1", ("topics", "verdicts"): "v.custom"})
    app = create_app(settings, connect_kafka=False)
    with TestClient(app) as client:
        answer = client.get("/asyncapi")
    assert answer.status_code == 200
    doc = answer.json()
    assert doc["asyncapi"].startswith("3.")
    assert doc == asyncapi_document(settings.topics)
    text = answer.text
    for topic in ("detect.in", "detect.backend.cpu", "detect.dlq", "v.custom"):
        assert topic in text
