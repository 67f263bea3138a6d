"""``?via=stream`` cannot leak: replies are matched by the shim's correlation id, never by the
client's item id. Through the real broker, router and worker (tiny-tfidf), two API keys."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest
from aiokafka.structs import ConsumerRecord

from deepfake_stream.core.settings import load_settings
from deepfake_stream.core.tracing import CORRELATION_HEADER
from deepfake_stream.schemas import Verdict
from deepfake_stream.shim.errors import ApiError
from deepfake_stream.shim.via_stream import StreamLink
from tests.conftest import unique_settings
from tests.integration.test_redis import REDIS, prefix  # noqa: F401 (a fixture)
from tests.integration.test_shim import KEY, TEXTS, shim_over_pipeline


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.integration
@pytest.mark.slow  # 15-30 s
async def test_same_id_from_two_keys_at_once_each_gets_its_own_verdict(
    kafka_bootstrap: str,
    prefix: str,  # noqa: F811
) -> None:
    settings = unique_settings(
        kafka_bootstrap,
        api__api_keys=f"{KEY},attacker-key",
        redis__url=REDIS,
        redis__key_prefix=prefix,
    )
    async with shim_over_pipeline(settings) as (app, client):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://shim",
            headers={"X-API-Key": "attacker-key", "deepfake.correlation_id": "forged"},
            timeout=30,
        ) as attacker:
            victim_body = {
                "id": "post-1",
                "text": TEXTS[0],
                "tenant": "forum",
                "metadata": {"email": "victim@example.org"},
            }
            attacker_body = {"id": "post-1", "text": TEXTS[1], "tenant": "evil"}
            victim, other = await asyncio.gather(
                client.post("/v1/detect?via=stream", json=victim_body),
                attacker.post("/v1/detect?via=stream", json=attacker_body),
            )
            assert victim.status_code == 200, victim.text
            assert other.status_code == 200, other.text
            assert victim.json()["tenant"] == "forum"
            assert victim.json()["metadata"] == {"email": "victim@example.org"}
            assert victim.json()["text_sha256"] == sha(TEXTS[0])
            assert other.json()["tenant"] == "evil"
            assert other.json()["metadata"] == {}
            assert other.json()["text_sha256"] == sha(TEXTS[1])

            # The same id and text again (a client retry): answered, not a 504, even
            # though its verdict was already published (de-duplication).
            again = await client.post("/v1/detect?via=stream", json=victim_body)
            assert again.status_code == 200, again.text
            assert again.json()["score"] == victim.json()["score"]


def _record(value: bytes, headers: list[tuple[str, bytes]]) -> ConsumerRecord:
    return ConsumerRecord("t", 0, 0, 0, 0, b"post-1", value, None, 0, len(value), headers)


def _verdict(item_id: str) -> bytes:
    fields = dict(model_id="m", model_version="1", backend="cpu", attempts=1, batch_size=1)
    v = Verdict.from_score(id=item_id, score=0.9, threshold=0.5, latency_ms=1.0,
                           scored_at="2026-01-01T00:00:00.000Z", **fields)  # fmt: skip
    return v.model_dump_json().encode()


async def test_replies_are_matched_by_correlation_id_only() -> None:
    link = StreamLink(load_settings())
    loop = asyncio.get_running_loop()
    mine, theirs = loop.create_future(), loop.create_future()
    link._waiting = {"c-mine": ("post-1", mine), "c-theirs": ("post-1", theirs)}
    # Same id, no correlation header (an upstream platform's item): answers nobody.
    link._answer(_record(_verdict("post-1"), []), is_dead_letter=False)
    # A header naming a waiting request but another item's verdict: a forgery, ignored.
    link._answer(
        _record(_verdict("other"), [(CORRELATION_HEADER, b"c-mine")]), is_dead_letter=False
    )
    assert not mine.done() and not theirs.done()
    link._answer(
        _record(_verdict("post-1"), [(CORRELATION_HEADER, b"c-mine")]), is_dead_letter=False
    )
    assert mine.result().id == "post-1" and not theirs.done()
    # A dead letter answers its own request only, with its reason.
    headers = [(CORRELATION_HEADER, b"c-theirs"), ("dlq.reason", b"all_backends_failed")]
    link._answer(_record(b"{}", headers), is_dead_letter=True)
    with pytest.raises(ApiError) as info:
        theirs.result()
    assert info.value.status == 502 and info.value.detail["reason"] == "all_backends_failed"
