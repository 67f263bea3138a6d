"""``?via=stream`` cannot leak: replies are matched by the shim's correlation id, never by the
client's item id. Through the real broker, router and worker (tiny-tfidf), two API keys."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest

from deepfake_stream.services import serve_router, serve_worker
from tests.conftest import unique_settings
from tests.integration.harness import running, wait_live
from tests.integration.test_redis import REDIS, prefix  # noqa: F401 (a fixture)
from tests.integration.test_shim import KEY, TEXTS, shim_client, wait_ready

pytestmark = pytest.mark.integration


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        await wait_live(settings, "cpu", "tiny-tfidf")
        async with shim_client(settings) as (app, client):
            await wait_ready(client)
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
