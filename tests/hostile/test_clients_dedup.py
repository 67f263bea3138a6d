"""De-duplication cannot lose an item: the key is (tenant, id, model_version, text_sha256).

An edited text re-sent under the same id, or another tenant's item with the same id, is a new
item and gets its own verdict; only a true duplicate (same tenant, id, model version and
text) is dropped, and that drop is counted. In one batch without Redis, and across batches
through the real broker and the real Redis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from deepfake_stream.core import metrics
from deepfake_stream.core.settings import Settings, load_settings
from tests.integration.harness import collect, publish, running, wait_live
from tests.integration.test_redis import _setup, prefix  # noqa: F401 (a fixture)
from tests.unit.test_worker import echo, make_worker, records, routed, verdicts

REDIS = "redis://127.0.0.1:6379/0"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def dropped(stage: str, model: str) -> float:
    return metrics.DUPLICATES_DROPPED.labels(stage, model)._value.get()


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


async def test_one_batch_without_redis_keeps_edits_and_tenants(
    executor: ThreadPoolExecutor,
) -> None:
    settings: Settings = load_settings()
    worker, _ = make_worker(settings, executor, echo())
    before = dropped("gpu", "m")
    batch = records(
        routed("post-1", text="original", tenant="forum"),
        routed("post-1", text="edited, now machine-written", tenant="forum"),
        routed("post-1", text="original", tenant="blog"),
        routed("post-1", text="original", tenant="forum"),  # the one true duplicate
    )
    result = await worker.handle(batch)
    got = sorted((v.tenant or "", v.text_sha256 or "") for _, v in verdicts(settings, result))
    assert got == sorted(
        [
            ("forum", sha("original")),
            ("forum", sha("edited, now machine-written")),
            ("blog", sha("original")),
        ]
    )
    assert worker.duplicates == 1
    assert dropped("gpu", "m") == before + 1


@pytest.mark.integration
@pytest.mark.slow  # 15-35 s
async def test_across_batches_with_redis_an_edit_gets_its_own_verdict(
    kafka_bootstrap: str,
    prefix: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="deepfake_stream.consumers.worker")
    settings, _, services = _setup(kafka_bootstrap, url=REDIS, key_prefix=prefix)
    human, ai = "a human wrote this post", "SECRET an edited, machine-written post"
    before = dropped("cpu", "m")
    async with running(*services):
        await wait_live(settings, "cpu", "m")
        await publish(settings, [{"id": "post-1", "text": human, "tenant": "forum"}])
        await collect(settings, verdicts=1, timeout=30)
        await publish(settings, [{"id": "post-1", "text": human, "tenant": "blog"}])
        await collect(settings, verdicts=2, timeout=30)
        await publish(settings, [{"id": "post-1", "text": ai, "tenant": "forum"}])
        await collect(settings, verdicts=3, timeout=30)
        # An upstream retry of the first item: a true duplicate, dropped and counted.
        await publish(settings, [{"id": "post-1", "text": human, "tenant": "forum"}])
        await publish(settings, [{"id": "sentinel", "text": "after the duplicate"}])
        results = await collect(settings, verdicts=4, timeout=30, settle=1.0)
    got = [(a.json()["id"], a.json()["tenant"], a.json()["text_sha256"]) for a in results.verdicts]
    assert sorted(got, key=str) == sorted(
        [
            ("post-1", "forum", sha(human)),
            ("post-1", "blog", sha(human)),
            ("post-1", "forum", sha(ai)),
            ("sentinel", None, sha("after the duplicate")),
        ],
        key=str,
    )
    assert dropped("cpu", "m") == before + 1
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "dropped 1 duplicate" in logged and "'post-1'" in logged
    assert "SECRET" not in logged and human not in logged
