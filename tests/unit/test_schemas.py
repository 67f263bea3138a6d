"""Message schemas: every malformed input maps to its contract ``dlq.reason``."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from pydantic import ValidationError

from deepfake_stream.core.errors import InvalidInput
from deepfake_stream.core.headers import parse_headers
from deepfake_stream.schemas import (
    DLQ_REASONS,
    DeadLetter,
    InputItem,
    RoutedItem,
    RoutingEnvelope,
    Verdict,
    parse_input,
)
from deepfake_stream.schemas.dead_letter import (
    DLQ_HEADERS,
    MAX_ERROR_MESSAGE_CHARS,
    TRUNCATED_HEADER,
)
from deepfake_stream.schemas.validate import DEFAULT_MAX_JSON_DEPTH

MAX_TEXT_CHARS = 100
MAX_MESSAGE_BYTES = 4_096


def parse(raw: bytes | None) -> InputItem:
    return parse_input(raw, max_text_chars=MAX_TEXT_CHARS, max_message_bytes=MAX_MESSAGE_BYTES)


def reason_of(raw: bytes | None) -> str:
    with pytest.raises(InvalidInput) as info:
        parse(raw)
    assert str(info.value), "the dead letter needs an error message"
    return info.value.reason


def doc(**fields: object) -> bytes:
    return json.dumps({"id": "post-1", "text": "hello", **fields}).encode()


def test_valid_item_parses_with_defaults() -> None:
    item = parse(doc())
    assert item.id == "post-1"
    assert item.text == "hello"
    assert item.model_id is None
    assert item.prefer_backend is None
    assert item.tenant is None
    assert item.metadata == {}
    assert item.deadline_ms is None


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"id": "a", "text": "b"',
        b"\xff\xfe\x00garbage",
        '{"id": "a", "text": "é"}'.encode("latin-1"),
        b"",
        None,
        b'{"id": "a", "text": "b", "metadata": {"x": NaN}}',
        b'{"id": "a", "text": "b", "metadata": {"x": -Infinity}}',
        b'{"id": "a", "text": "b", "tenant": "\\ud800"}',
        b'{"id": "a", "text": "b", "metadata": {"\\udfff": 1}}',
    ],
    ids=[
        "garbage",
        "truncated",
        "binary",
        "latin1",
        "empty",
        "none",
        "nan",
        "inf",
        "surrogate",
        "surrogate-key",
    ],
)
def test_unparseable_bytes_are_invalid_json(raw: bytes | None) -> None:
    if raw is not None and len(raw) > MAX_MESSAGE_BYTES:
        with pytest.raises(InvalidInput) as info:
            parse_input(raw, max_text_chars=MAX_TEXT_CHARS, max_message_bytes=1 << 20)
        assert info.value.reason == "invalid_json"
    else:
        assert reason_of(raw) == "invalid_json"


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b'[{"id": "a", "text": "b"}]',
        b'"just a string"',
        b"42",
        b"null",
        json.dumps({"text": "no id"}).encode(),
        json.dumps({"id": "no text"}).encode(),
        doc(id=123),
        doc(id=["a"]),
        doc(id=None),
        doc(id=""),
        doc(id="x" * 129),
        doc(text=""),
        doc(text=42),
        doc(prefer_backend="tpu"),
        doc(prefer_backend="CPU"),
        doc(deadline_ms="soon"),
        doc(metadata="not a dict"),
    ],
    ids=[
        "array",
        "array-of-object",
        "string",
        "number",
        "null",
        "missing-id",
        "missing-text",
        "int-id",
        "list-id",
        "null-id",
        "empty-id",
        "id-129",
        "empty-text",
        "int-text",
        "bad-backend",
        "uppercase-backend",
        "string-deadline",
        "string-metadata",
    ],
)
def test_wrong_shapes_are_invalid_schema(raw: bytes) -> None:
    assert reason_of(raw) == "invalid_schema"


def test_id_of_wrong_type_is_rejected_not_coerced() -> None:
    with pytest.raises(InvalidInput) as info:
        parse(doc(id=123))
    assert "id" in str(info.value)


def test_id_length_bounds() -> None:
    assert parse(doc(id="x")).id == "x"
    assert parse(doc(id="x" * 128)).id == "x" * 128
    assert reason_of(doc(id="x" * 129)) == "invalid_schema"


def test_text_length_bound_is_too_large() -> None:
    assert parse(doc(text="a" * MAX_TEXT_CHARS)).text == "a" * MAX_TEXT_CHARS
    assert reason_of(doc(text="a" * (MAX_TEXT_CHARS + 1))) == "too_large"


def test_text_limit_counts_characters_not_bytes() -> None:
    # 100 three-byte characters are 300 bytes but still within a 100-character limit.
    assert len(parse(doc(text="€" * MAX_TEXT_CHARS)).text) == MAX_TEXT_CHARS


def test_message_over_max_bytes_is_too_large_even_if_not_json() -> None:
    assert reason_of(b"x" * (MAX_MESSAGE_BYTES + 1)) == "too_large"
    big = doc(metadata={"pad": "p" * MAX_MESSAGE_BYTES})
    assert reason_of(big) == "too_large"


def test_prefer_backend_accepts_contract_values() -> None:
    for backend in ("cpu", "gpu", "modal"):
        assert parse(doc(prefer_backend=backend)).prefer_backend == backend


def test_extra_fields_are_ignored() -> None:
    item = parse(doc(brand_new_field={"x": 1}, another=[1, 2]))
    assert item.id == "post-1"
    assert "brand_new_field" not in item.model_dump()


def test_tenant_metadata_deadline_are_kept() -> None:
    item = parse(doc(tenant="acme", metadata={"lang": "en", "n": [1, 2]}, deadline_ms=123))
    assert item.tenant == "acme"
    assert item.metadata == {"lang": "en", "n": [1, 2]}
    assert item.deadline_ms == 123


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 1_500 + b"]" * 1_500,
        b'{"id": "a", "text": "b", "ignored": ' + b"[" * 1_500 + b"]" * 1_500 + b"}",
        b'{"id": "a", "text": "b", "ignored": ' + b"[" * 40 + b"]" * 40 + b"}",
    ],
    ids=["past-the-parser", "ignored-field-past-the-parser", "ignored-field"],
)
def test_json_nested_too_deep_anywhere_is_invalid_schema(raw: bytes) -> None:
    """One documented answer (MAX_JSON_DEPTH), whether the parser could go that deep or not."""
    assert reason_of(raw) == "invalid_schema"


@pytest.mark.parametrize("text", [" ", "\n\t  \r\n", "\u3000\u2003"])
def test_whitespace_only_text_is_invalid_schema(text: str) -> None:
    assert reason_of(json.dumps({"id": "a", "text": text}).encode()) == "invalid_schema"


def test_deeply_nested_metadata_is_rejected_at_the_edge() -> None:
    def nested(depth: int) -> object:
        value: object = 1
        for _ in range(depth):
            value = [value]
        return value

    ok = parse_input(
        doc(metadata={"x": nested(DEFAULT_MAX_JSON_DEPTH - 1)}),
        max_text_chars=MAX_TEXT_CHARS,
        max_message_bytes=1 << 20,
    )
    # What passes the edge must survive the router's re-serialisation and the worker's parse.
    routed = RoutedItem(
        **ok.model_dump(),
        routing=RoutingEnvelope(model_id="m", target="cpu", first_seen_ms=1),
    )
    assert RoutedItem.model_validate_json(routed.model_dump_json()).metadata == ok.metadata
    with pytest.raises(InvalidInput) as info:
        parse_input(
            doc(metadata={"x": nested(300)}),
            max_text_chars=MAX_TEXT_CHARS,
            max_message_bytes=1 << 20,
        )
    assert info.value.reason == "invalid_schema"


# --- verdicts ---------------------------------------------------------------------------


def verdict(score: float, threshold: float = 0.5, **fields: object) -> Verdict:
    base: dict[str, object] = {
        "id": "post-1",
        "model_id": "m",
        "model_version": "1+sha256:abc",
        "backend": "cpu",
        "attempts": 1,
        "batch_size": 1,
        "latency_ms": 1.0,
        "scored_at": "2026-11-22T10:30:45.123Z",
    }
    base.update(fields)
    return Verdict.from_score(score=score, threshold=threshold, **base)


@pytest.mark.parametrize(
    ("score", "threshold", "label"),
    [
        (0.5, 0.5, "ai"),
        (0.4999999, 0.5, "human"),
        (0.93, 0.5, "ai"),
        (0.0, 0.0, "ai"),
        (1.0, 1.0, "ai"),
        (0.99, 1.0, "human"),
        (0.0, 0.5, "human"),
    ],
)
def test_from_score_label_rule(score: float, threshold: float, label: str) -> None:
    v = verdict(score, threshold)
    assert v.label == label
    assert v.is_fake is (label == "ai")
    assert v.score == score
    assert v.threshold == threshold


def test_verdict_rejects_label_inconsistent_with_score() -> None:
    good = verdict(0.9).model_dump()
    with pytest.raises(ValidationError):
        Verdict.model_validate({**good, "label": "human", "is_fake": False})
    with pytest.raises(ValidationError):
        Verdict.model_validate({**good, "is_fake": False})
    human = verdict(0.1).model_dump()
    with pytest.raises(ValidationError):
        Verdict.model_validate({**human, "label": "ai", "is_fake": True})
    assert Verdict.model_validate(good) == verdict(0.9)


@pytest.mark.parametrize("score", [-0.01, 1.01, float("nan")])
def test_verdict_rejects_scores_outside_unit_interval(score: float) -> None:
    with pytest.raises(ValidationError):
        verdict(score)


def test_verdict_round_trips_as_json_with_contract_keys() -> None:
    v = verdict(0.7, tenant="acme", metadata={"k": "v"}, fallback_from=["gpu"], attempts=2)
    as_json = json.loads(v.model_dump_json())
    assert set(as_json) == {
        "id",
        "model_id",
        "model_version",
        "score",
        "label",
        "is_fake",
        "threshold",
        "operating_point",
        "confidence",
        "reasons",
        "language",
        "evasion",
        "scored_chars",
        "windows",
        "spans",
        "revises",
        "backend",
        "fallback_from",
        "attempts",
        "batch_size",
        "latency_ms",
        "scored_at",
        "replay",
        "tenant",
        "metadata",
        "text_sha256",
    }
    assert Verdict.model_validate(as_json) == v


def test_verdict_without_text_sha256_still_parses() -> None:
    """Verdicts written before the field existed (consumers read the topic's history)."""
    old = json.loads(verdict(0.7).model_dump_json())
    del old["text_sha256"]
    assert Verdict.model_validate(old).text_sha256 is None


# --- dead letters ---------------------------------------------------------------------------

CONTRACT_HEADERS = {
    "dlq.reason",
    "dlq.stage",
    "dlq.error.class",
    "dlq.error.message",
    "dlq.original.topic",
    "dlq.original.partition",
    "dlq.original.offset",
    "dlq.attempts",
    "dlq.failed_at",
}


def letter(message: str = "boom", **fields: object) -> DeadLetter:
    base: dict[str, object] = {
        "reason": "model_error",
        "stage": "cpu",
        "error_class": "ModelError",
        "error_message": message,
        "original_topic": "detect.backend.cpu",
        "original_partition": 3,
        "original_offset": 42,
        "attempts": 2,
    }
    base.update(fields)
    return DeadLetter(**base)  # type: ignore[arg-type]


def test_dead_letter_headers_are_the_contract_names_as_utf8_bytes() -> None:
    headers = letter().headers()
    assert {k for k, _ in headers} == CONTRACT_HEADERS
    assert len(headers) == len(CONTRACT_HEADERS)
    for _, value in headers:
        assert isinstance(value, bytes)
        value.decode("utf-8")
    h = parse_headers(headers)
    assert h["dlq.reason"] == "model_error"
    assert h["dlq.stage"] == "cpu"
    assert h["dlq.error.class"] == "ModelError"
    assert h["dlq.error.message"] == "boom"
    assert h["dlq.original.topic"] == "detect.backend.cpu"
    assert h["dlq.original.partition"] == "3"
    assert h["dlq.original.offset"] == "42"
    assert h["dlq.attempts"] == "2"


def test_dead_letter_message_is_one_bounded_line() -> None:
    trace = "Traceback (most recent call last):\n  File x\n\tline 2\r\n" + "é" * 5_000
    h = parse_headers(letter(trace).headers())
    message = h["dlq.error.message"]
    assert len(message) == MAX_ERROR_MESSAGE_CHARS
    assert "\n" not in message and "\r" not in message and "\t" not in message
    assert message.startswith("Traceback (most recent call last): File x line 2 é")


def test_every_dead_letter_header_is_documented_where_it_is_emitted() -> None:
    """The AsyncAPI document shows DLQ_HEADERS: every header the emitter writes is there."""
    assert {k for k, _ in letter().headers()} | {TRUNCATED_HEADER} == set(DLQ_HEADERS)


def test_dead_letter_failed_at_is_iso8601_utc() -> None:
    failed_at = parse_headers(letter().headers())["dlq.failed_at"]
    parsed = datetime.fromisoformat(failed_at.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0


def test_every_contract_reason_is_accepted() -> None:
    assert set(DLQ_REASONS) == {
        "invalid_json",
        "invalid_schema",
        "too_large",
        "unknown_model",
        "all_backends_failed",
        "deadline_exceeded",
        "model_error",
        "no_live_backend",
    }
    for reason in DLQ_REASONS:
        assert parse_headers(letter(reason=reason).headers())["dlq.reason"] == reason


def test_parse_headers_survives_undecodable_and_missing_values() -> None:
    h = parse_headers([("a", b"\xff"), ("b", None), ("a", b"last")])  # type: ignore[list-item]
    assert h == {"a": "last", "b": ""}


# --- routed items ---------------------------------------------------------------------------


def test_routed_item_round_trip_keeps_item_and_routing_fields() -> None:
    item = parse(doc(tenant="t", metadata={"k": [1]}, deadline_ms=99, prefer_backend="gpu"))
    envelope = RoutingEnvelope(
        model_id="small-x",
        target="gpu",
        chain=["cpu"],
        attempts=2,
        fallback_from=["modal"],
        first_seen_ms=1_700_000_000_000,
        trace={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
        replay=True,
    )
    routed = RoutedItem(**item.model_dump(), routing=envelope)
    back = RoutedItem.model_validate_json(routed.model_dump_json().encode())
    assert back == routed
    assert back.routing.chain == ["cpu"]
    assert back.routing.attempts == 2
    assert back.routing.fallback_from == ["modal"]
    assert back.routing.first_seen_ms == 1_700_000_000_000
    assert back.routing.trace == envelope.trace
    assert back.routing.replay is True
    assert back.tenant == "t" and back.metadata == {"k": [1]} and back.deadline_ms == 99


def test_routed_item_without_routing_is_rejected() -> None:
    with pytest.raises(ValidationError):
        RoutedItem.model_validate_json(doc())
    with pytest.raises(ValidationError):
        RoutingEnvelope(model_id="m", target="cpu", first_seen_ms=1, attempts=0)
