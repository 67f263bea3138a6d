"""Coverage, limits and evasion on real verdicts: the real broker, the real tiny-tfidf, the
HTTP shim and replay all give the same fields for the same texts; a replay that changes a
verdict's label says which verdict it revises."""

from __future__ import annotations

from dataclasses import replace

import pytest

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.models.operating_points import OperatingPoint
from deepfake_stream.models.registry import Registry, registry_for
from deepfake_stream.producers.replay import ReplayOptions, replay
from deepfake_stream.producers.scan import Selection
from deepfake_stream.routing.service import serve_router
from deepfake_stream.schemas import Verdict
from tests.conftest import unique_settings
from tests.integration.harness import collect, publish, running, wait_live
from tests.integration.test_shim import KEY, shim_client, wait_ready
from tests.texts import TURKISH, ai_english, evade, long_human_with_ai_section

pytestmark = pytest.mark.integration

LONG, AI_START, AI_END = long_human_with_ai_section()
TEXTS = {
    "short": "The committee will reconvene next week to review the proposal.",
    "turkish": TURKISH,
    "evaded": evade(ai_english()),
    "clean": ai_english(),
    "long": LONG,
}
EXPECTED = {
    "short": {"reasons": ["too_short"], "confidence": "low", "language": "en", "evasion": []},
    "turkish": {
        "reasons": ["too_short", "unsupported_language:tr"],  # 59 words; min_words 150
        "confidence": "low",
        "language": "tr",
        "evasion": [],
    },
    "evaded": {"reasons": [], "language": "en", "evasion": ["zero_width", "homoglyph"]},
    "clean": {"reasons": [], "language": "en", "evasion": []},
    "long": {"reasons": [], "language": "en", "evasion": [], "windows": 39, "label": "ai"},
}
# What differs by nature between two scorings of the same text.
PER_SCORING = {"id", "latency_ms", "scored_at", "batch_size", "sentences", "replay", "revises"}


def check_fields(v: dict, name: str) -> None:
    Verdict.model_validate({k: x for k, x in v.items() if k != "sentences"})
    for key, want in EXPECTED[name].items():
        assert v[key] == want, (name, key, v[key])
    assert v["scored_chars"] == len(TEXTS[name])


async def test_fields_through_the_stream_the_shim_and_replay(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap, api__api_keys=KEY)
    # The sensitive operating point (5% FPR): the AI texts here score between its threshold
    # and the default's, so label changes below come from the operating point.
    base = {"model_id": "tiny-tfidf", "operating_point": "sensitive"}
    docs = [{"id": name, "text": t, **base} for name, t in TEXTS.items()]
    docs.append({"id": "long-detail", "text": LONG, "detail": True, **base})
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        await wait_live(settings, "cpu", "tiny-tfidf")
        await publish(settings, docs)
        stream = (await collect(settings, verdicts=len(docs), timeout=120)).by_id()
        for name in TEXTS:
            check_fields(stream[name], name)
            assert stream[name]["spans"] is None
        assert stream["evaded"]["label"] == stream["clean"]["label"] == "ai"
        assert abs(stream["evaded"]["score"] - stream["clean"]["score"]) < 1e-6

        spans = stream["long-detail"]["spans"]
        assert [spans[0]["start"], spans[-1]["end"]] == [0, len(LONG)]
        within = [s for s in spans if s["start"] >= AI_START and s["end"] <= AI_END]
        outside = [s for s in spans if s["end"] <= AI_START or s["start"] >= AI_END]
        assert within and min(s["score"] for s in within) > max(s["score"] for s in outside)

        # The shim, in-process, agrees with the stream on every field.
        async with shim_client(settings) as (_, client):
            await wait_ready(client)
            for name, text in TEXTS.items():
                r = await client.post("/v1/detect", json={"text": text, **base})
                assert r.status_code == 200, r.text
                shim = r.json()
                check_fields(shim, name)
                want = stream[name]
                assert {k: v for k, v in shim.items() if k not in PER_SCORING} == {
                    k: v for k, v in want.items() if k not in PER_SCORING
                }
            r = await client.post("/v1/detect", json={"text": LONG, "detailed": True, **base})
            assert r.status_code == 200, r.text
            assert r.json()["spans"] == spans

    # Replay with the same model: same fields, nothing revised. With a stricter threshold at
    # the same operating point, the AI verdicts flip and name the verdict they replace.
    summary = await replay(settings, Selection(), ReplayOptions(progress=False))
    assert summary.rescored == len(docs)
    same = (await collect(settings, verdicts=len(docs), timeout=60, settle=1.0)).verdicts
    replayed = {a.json()["id"]: a.json() for a in same if a.json()["replay"]}
    assert set(replayed) == set(stream)
    for name in TEXTS:
        check_fields(replayed[name], name)
        assert replayed[name]["revises"] is None

    shipped = registry_for(settings)
    tiny = shipped.models["tiny-tfidf"]
    strict = Registry(
        models={
            "tiny-tfidf": replace(
                tiny,
                operating_points={
                    **tiny.operating_points,
                    "sensitive": OperatingPoint(threshold=0.9999, target_fpr=0.05),
                },
            )
        },
        default_model="tiny-tfidf",
    )
    await replay(settings, Selection(), ReplayOptions(progress=False), registry=strict)
    results = await collect(settings, verdicts=len(docs), timeout=60, settle=1.0)
    last: dict[str, dict] = {}
    for arrival in results.verdicts:
        last[arrival.json()["id"]] = arrival.json()
    flipped = [n for n in TEXTS if replayed[n]["label"] != last[n]["label"]]
    assert {"evaded", "clean", "long"} <= set(flipped)
    for name in TEXTS:
        before = replayed[name]
        want = (
            {"model_version": before["model_version"], "scored_at": before["scored_at"]}
            if name in flipped
            else None
        )
        assert last[name]["revises"] == want, name
