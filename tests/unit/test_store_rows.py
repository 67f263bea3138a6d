"""Kafka records -> verdict-store rows, and API-key entries -> principals (no database)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from deepfake_stream.core.settings import load_settings
from deepfake_stream.schemas.dead_letter import DeadLetter
from deepfake_stream.shim.auth import key_id, parse_keys, parse_principals, principal_of
from deepfake_stream.store.rows import dead_letter_row, parse_time, verdict_row
from tests.store_db import record, verdict_doc

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def test_verdict_row_keeps_known_fields_and_the_whole_message() -> None:
    doc = verdict_doc(
        "a-1",
        tenant="acme",
        confidence="high",
        operating_point="balanced",
        text_sha256="f" * 64,
        scored_chars=5120,
        revises={"model_version": "old", "scored_at": "2026-11-01T00:00:00Z"},
        future_field={"kept": True},
        fallback_from=["gpu"],
        replay=True,
    )
    row = verdict_row(record(doc, partition=3, offset=17), NOW)
    assert row is not None
    assert (row["topic"], row["partition"], row["offset"]) == ("detect.verdicts", 3, 17)
    assert row["item_id"] == "a-1" and row["tenant"] == "acme"
    assert row["confidence"] == "high" and row["operating_point"] == "balanced"
    assert row["text_sha256"] == "f" * 64 and row["text_length"] == 5120
    assert row["revises"]["model_version"] == "old"
    assert row["fallback_from"] == ["gpu"] and row["replay"] is True
    assert row["scored_at"] == datetime(2026, 12, 1, 10, 30, 45, 123000, tzinfo=UTC)
    assert row["body"]["future_field"] == {"kept": True}  # new schema fields are never lost


def test_a_verdict_without_optional_fields_stores_nulls() -> None:
    row = verdict_row(record(verdict_doc("b")), NOW)
    assert row is not None
    assert row["text_sha256"] is None and row["text_length"] is None
    assert row["confidence"] is None and row["revises"] is None


def test_non_verdicts_are_not_rows() -> None:
    for value in (b"not json", b"[1]", json.dumps({"id": 1}).encode(), b'{"id": "x"}'):
        assert verdict_row(record(value), NOW) is None


def test_dead_letter_row_has_headers_and_digest_never_the_bytes() -> None:
    original = json.dumps({"id": "d-1", "tenant": "acme", "text": "secret text"}).encode()
    letter = DeadLetter(
        reason="unknown_model",
        stage="router",
        error_class="UnknownModel",
        error_message="no such model",
        original_topic="detect.in",
        original_partition=2,
        original_offset=99,
        attempts=0,
    )
    row = dead_letter_row(
        record(original, topic="detect.dlq", offset=5, headers=letter.headers()), NOW
    )
    assert row["item_id"] == "d-1" and row["tenant"] == "acme"
    assert row["reason"] == "unknown_model" and row["stage"] == "router"
    assert (row["original_topic"], row["original_partition"], row["original_offset"]) == (
        "detect.in",
        2,
        99,
    )
    assert row["value_sha256"] == hashlib.sha256(original).hexdigest()
    assert row["value_length"] == len(original)
    assert "secret text" not in json.dumps(row, default=str)
    assert row["headers"] and all(k.startswith("dlq.") for k in row["headers"])


def test_dead_letter_of_garbage_takes_the_key_as_id() -> None:
    row = dead_letter_row(record(b"\xff\xfe", topic="detect.dlq", key=b"k-9"), NOW)
    assert row["item_id"] == "k-9" and row["tenant"] is None and row["reason"] is None


def test_parse_time_is_utc() -> None:
    assert parse_time("2026-12-01T12:00:00+02:00") == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert parse_time("nope") is None and parse_time(None) is None


def test_key_entries_bind_tenants_and_mark_admins() -> None:
    settings = load_settings(
        {("api", "api_keys"): "plain, bound:acme ,boss:acme:admin,root::admin"}
    )
    digests = parse_keys(settings)
    principals = parse_principals(settings)
    assert len(digests) == len(principals) == 4
    assert digests[1] == hashlib.sha256(b"bound").digest()  # the tenant is not part of the key
    by_key = {k: principal_of(k, digests, principals) for k in ("plain", "bound", "boss", "root")}
    assert by_key["plain"].tenant is None and not by_key["plain"].admin
    assert by_key["bound"].tenant == "acme" and not by_key["bound"].admin
    assert by_key["boss"].tenant == "acme" and by_key["boss"].admin
    assert by_key["root"].tenant is None and by_key["root"].admin
    assert principal_of("bound:acme", digests, principals) is None
    assert by_key["bound"].key_id == key_id("bound")
    assert "bound" not in key_id("bound") and len(key_id("bound")) == 16
