"""Issue 12's done-when check: the nine hostile cases, sent by an outside client (this test
process, speaking only Kafka through plain aiokafka, HTTP through httpx, and the CLI as a
user types it) to one running `deepfake-stream up` on its embedded defaults (embedded
broker, router, CPU worker, shim with two API keys, verdict store, Redis on).

Each case gets its clear answer (an HTTP error with its code, or exactly one dead letter
with its reason), every valid item sent alongside gets exactly one verdict, and afterwards
the very same service processes are alive: none died, none was restarted. Alongside, issue
9's done-when check: the same outside client sees every actionable-verdict field (operating
point, confidence, reasons, language, evasion, windows, spans) on real verdicts, and the shim
gives the same fields for the same text and model.

Case 9 (the Modal bridge's error accounting and first model_version) needs a deployed Modal
app, which `up` runs only when Modal is configured; it is covered in-process by
tests/hostile/test_core_liveness.py and tests/integration/test_modal_bridge.py. What an
outside client can see of it here is that the first verdicts carry the version the shim
lists for the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import time
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from deepfake_stream.embedded_broker import free_port
from deepfake_stream.schemas.dead_letter import TRUNCATED_HEADER
from deepfake_stream.supervisor import console_command
from tests.hostile.core_raw import RawHeaderKey, python_batch_builder
from tests.hostile.test_clients_stream_codec import HOSTILE
from tests.integration.test_redis import REDIS
from tests.system import Outcome, deepfake_up, read_outputs, wait_for_verdict_of
from tests.texts import TURKISH, ai_english, evade, long_human_with_ai_section

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # `up` and every case: 78-150 s

VICTIM, ATTACKER = "victim-key", "attacker-key"
LONG, AI_START, AI_END = long_human_with_ai_section()
# Issue 9: items whose verdicts must carry each actionable field (id -> text, extra fields).
ACTIONABLE: dict[str, tuple[str, dict[str, object]]] = {
    "fields-short": ("Too short to judge, this one.", {}),
    "fields-turkish": (TURKISH, {}),
    "fields-clean": (ai_english(), {"operating_point": "sensitive"}),
    "fields-evaded": (evade(ai_english()), {"operating_point": "sensitive"}),
    "fields-strict": (ai_english(), {"operating_point": "strict"}),
    "fields-long": (LONG, {"operating_point": "sensitive", "detail": True}),
}
# What differs by nature between two scorings of the same text.
PER_SCORING = {"id", "latency_ms", "scored_at", "batch_size", "sentences", "replay", "revises"}
HOLD_MAX_S = 4.0
N_VALID = 300
TEXT_A = "The committee will reconvene next week to review the proposal in detail."
TEXT_B = "honestly no idea why the printer keeps jamming, tried everything lol"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        line = next(x for x in fh if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


class Stream:
    """The Kafka side of the outside client: records to detect.in, one partition (so a held
    or oversize record is in front of the valid items behind it), acks=all."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            max_request_size=16 << 20,  # an outside producer's limits are its own business
            max_batch_size=1 << 20,
        )
        self.acks: list[asyncio.Future] = []
        self.valid: dict[str, str] = {}
        self.n = 0

    async def send(self, value: bytes, key: bytes | None = None, headers=()) -> None:  # type: ignore[no-untyped-def]
        self.acks.append(
            await self.producer.send(
                "detect.in", value, key=key, headers=list(headers), partition=0
            )
        )

    async def item(self, item_id: str, text: str, headers=(), **fields: object) -> bytes:  # type: ignore[no-untyped-def]
        raw = json.dumps({"id": item_id, "text": text, **fields}).encode()
        await self.send(raw, item_id.encode(), headers)
        return raw

    async def valid_items(self, n: int) -> None:
        """Ordinary traffic between the hostile records."""
        for _ in range(n):
            item_id = f"valid-{self.n}"
            text = f"{(TEXT_A, TEXT_B)[self.n % 2]} Item number {self.n}."
            self.valid[item_id] = text
            self.n += 1
            await self.item(item_id, text)


def redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping())
    except Exception:
        return False


async def test_the_nine_cases_from_an_outside_client_against_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    http_port = free_port()
    # With Redis (as the run had it) an exact re-send is dropped whichever batch it
    # lands in; without, `up` runs without it (never fails) and only a re-send in the same
    # batch is dropped: the check below is then looser, the rest the same.
    with_redis = redis_answers()
    env = {
        "HTTP_PORT": str(http_port),
        "DETECT_API_KEYS": f"{VICTIM},{ATTACKER}",
        "REDIS_URL": REDIS if with_redis else "",
        "REDIS_KEY_PREFIX": f"up-hostile-{uuid.uuid4().hex[:8]}",
        "MODELS_ONLY": "tiny-tfidf",  # small-perplexity stays registered but served nowhere
        "ROUTER_HOLD_MAX_S": str(HOLD_MAX_S),
        "DATABASE_STATE_DIR": str(tmp_path / "state"),
    }
    base = f"http://127.0.0.1:{http_port}"
    t0 = time.monotonic()
    with deepfake_up(tmp_path, **env) as up:
        await wait_for_verdict_of(up.bootstrap, "probe-0")
        http = httpx.AsyncClient(base_url=base, headers={"X-API-Key": VICTIM}, timeout=60)
        attacker = httpx.AsyncClient(base_url=base, headers={"X-API-Key": ATTACKER}, timeout=60)
        async with http, attacker:
            deadline = time.monotonic() + 60
            while True:
                ready = await http.get("/readyz")
                body = ready.json()
                if ready.status_code == 200 and body["stream_connected"] and body["live_backends"]:
                    break
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.2)
            children = sorted(up.children())
            assert len(children) >= 4, up.log()  # router, cpu worker, shim, store
            rss_before = {pid: rss_mb(pid) for pid in children}
            started = time.monotonic()

            # Case 4 (part): an id claimed through the shim before the real item arrives.
            claim = await attacker.post(
                "/v1/detect", json={"id": "claimed-1", "text": "the attacker's text, first"}
            )
            assert claim.status_code == 200, claim.text

            stream = Stream(up.bootstrap)
            dead: dict[bytes, str] = {}  # original value -> the dlq.reason it must get
            with python_batch_builder():  # case 1 needs it (see core_raw)
                await stream.producer.start()
                try:
                    await stream.valid_items(20)
                    # Case 1: a header key that is not UTF-8.
                    await stream.item("bad-header-key", TEXT_A, [(RawHeaderKey(b"\xff\xfe"), b"v")])
                    stream.valid["bad-header-key"] = TEXT_A
                    await stream.valid_items(20)
                    # Case 2: just under the broker's request limit, and over it.
                    near = json.dumps({"id": "near", "text": "n" * (4_194_000 - 26)}).encode()
                    over = json.dumps({"id": "over", "text": "o" * 6_000_000}).encode()
                    for raw in (near, over):
                        await stream.send(raw, json.loads(raw)["id"].encode())
                        dead[raw] = "too_large"
                    await stream.valid_items(20)
                    # Case 3: a model no live backend serves is held, not in anyone's way.
                    held = await stream.item("held", TEXT_A, model_id="small-perplexity")
                    dead[held] = "no_live_backend"
                    await stream.valid_items(40)
                    # Case 4: one id, two tenants, an edit, an exact re-send, the claimed id.
                    await stream.item("post-1", TEXT_A, tenant="blog")
                    await stream.item("post-1", TEXT_A, tenant="forum")
                    await stream.item("post-1", TEXT_B, tenant="blog")  # an edit
                    await stream.item("post-1", TEXT_A, tenant="blog")  # a re-send: dropped
                    await stream.item("claimed-1", TEXT_B)
                    await stream.valid_items(20)
                    # Issue 9: actionable fields; an undocumented operating point is refused.
                    for item_id, (text, extra) in ACTIONABLE.items():
                        await stream.item(item_id, text, **extra)
                        stream.valid[item_id] = text
                    unknown_point = await stream.item("fields-bad", TEXT_A, operating_point="lax")
                    dead[unknown_point] = "invalid_schema"
                    await stream.valid_items(20)
                    # Case 7 (stream side): surrogates, NaN, Infinity, deep JSON, blank text.
                    for raw, reason in HOSTILE.values():
                        await stream.send(raw)
                        dead[raw] = reason
                    await stream.valid_items(N_VALID - stream.n)
                    await asyncio.gather(*stream.acks)
                finally:
                    await stream.producer.stop()
            sent_at = time.monotonic()

            # Case 5: ?via=stream, the same id from two keys at once, then a retry.
            victim_body = {"id": "post-9", "text": TEXT_A, "tenant": "forum",
                           "metadata": {"email": "victim@example.org"}}  # fmt: skip
            attacker_body = {"id": "post-9", "text": TEXT_B, "tenant": "evil"}
            mine, theirs = await asyncio.gather(
                http.post("/v1/detect?via=stream", json=victim_body),
                attacker.post(
                    "/v1/detect?via=stream",
                    json=attacker_body,
                    headers={"deepfake.correlation_id": "forged"},
                ),
            )
            assert mine.status_code == 200 and theirs.status_code == 200, (mine.text, theirs.text)
            assert mine.json()["tenant"] == "forum" and mine.json()["text_sha256"] == sha(TEXT_A)
            assert mine.json()["metadata"] == {"email": "victim@example.org"}
            assert theirs.json()["tenant"] == "evil" and theirs.json()["metadata"] == {}
            assert theirs.json()["text_sha256"] == sha(TEXT_B)
            t = time.monotonic()
            again = await http.post("/v1/detect?via=stream", json=victim_body)
            assert again.status_code == 200, again.text
            assert time.monotonic() - t < 5, "a retried id waited out the stream timeout"

            # Case 6: the sentence splitter on 99,998 spaces, /healthz meanwhile; and a body
            # asking for more sentence scores than allowed.
            t = time.monotonic()
            spaces = asyncio.ensure_future(
                http.post("/v1/detect", json={"text": "a" + " " * 99_998 + "b", "detailed": True})
            )
            await asyncio.sleep(0.05)
            t_health = time.monotonic()
            assert (await http.get("/healthz")).status_code == 200
            health_s = time.monotonic() - t_health
            r = await spaces
            spaces_s = time.monotonic() - t
            assert r.status_code == 200, r.text
            assert health_s < 2 and spaces_s < 10, (health_s, spaces_s)
            t = time.monotonic()
            r = await http.post("/v1/detect", json={"text": "Go. " * 24_000, "detailed": True})
            many_s = time.monotonic() - t
            assert r.status_code == 422 and r.json()["error"] == "too_many_sentences", r.text
            assert "HTTP_DETAILED_MAX_SENTENCES" in r.json()["detail"]

            # Case 7 (shim side): the same bodies answer 422 with the stream's reason, no 500.
            for raw, reason in HOSTILE.values():
                r = await http.post(
                    "/v1/detect", content=raw, headers={"content-type": "application/json"}
                )
                assert r.status_code == 422 and r.json()["error"] == reason, (raw[:50], r.text)
                assert "Traceback" not in r.text

            # Case 8: careless replay selections (one line, exit 2), then failed API keys.
            cli_env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": up.bootstrap}
            for argv, problem in [
                (["--offsets", " "], "expected PARTITION:FROM-TO"),
                (["--offsets", "0:0-5,0:10-20"], "partition 0 is given twice"),
                (["--offsets", "999:0-5"], "has no partition"),
                (["--since", "2026-01-02", "--until", "2026-01-01"], "must be before --until"),
            ]:
                proc = await asyncio.to_thread(
                    subprocess.run,
                    [*console_command(), "replay", *argv],
                    env=cli_env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                lines = [x for x in proc.stderr.splitlines() if x.strip()]
                assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
                assert problem in lines[-1] and "ERROR" in lines[-1], (argv, lines)
                if "999" not in argv[-1]:  # an argument error: refused before any connection
                    assert len(lines) == 1, (argv, lines)

            # Case 9 (what an outside client sees): verdicts carry the listed model version.
            listed = (await http.get("/v1/models/tiny-tfidf")).json()["version"]

            # Issue 9: the shim's verdicts on the same texts (compared with the stream below).
            shim_fields = {}
            for item_id, (text, extra) in ACTIONABLE.items():
                body = {"text": text, **{k: v for k, v in extra.items() if k != "detail"}}
                if extra.get("detail"):
                    body["detailed"] = True
                r = await http.post("/v1/detect", json=body)
                assert r.status_code == 200, r.text
                shim_fields[item_id] = r.json()

            # Case 8 (last: it locks this address out): guessing keys is rate-limited.
            codes = [
                (
                    await http.post("/v1/detect", json={"text": "x"}, headers={"X-API-Key": g})
                ).status_code
                for g in (f"guess-{i}" for i in range(30))
            ]
            assert codes.count(401) <= 10 and codes[-1] == 429, codes
            assert (await http.get("/healthz")).status_code == 200

        # Every outcome: wait for them, then read everything once more to catch extras.
        expect_ids = set(stream.valid) | {"claimed-1"}
        out = Outcome()
        await read_outputs(
            up.bootstrap,
            out,
            lambda o: (
                expect_ids <= o.verdicts.keys()
                and sum(len(v) for k, v in o.verdicts.items() if k == "post-1") >= 3
                and len(o.dead) >= len(dead)
            ),
            timeout=180,
        )
        flowed_s = time.monotonic() - started
        await asyncio.sleep(2.0)
        out = Outcome()
        await read_outputs(up.bootstrap, out, lambda o: False, timeout=4)

        # Nothing died or restarted; memory stayed bounded.
        assert sorted(up.children()) == children, up.log()[-3000:]
        assert up.process.poll() is None
        assert "restarting" not in up.log(), up.log()[-3000:]
        rss_after = {pid: rss_mb(pid) for pid in children}
        grown = {pid: rss_after[pid] - rss_before[pid] for pid in children}
        assert max(grown.values()) < 300, grown

        # replay --all reads the whole history (case 1's record, case 7's) without dying.
        proc = await asyncio.to_thread(
            subprocess.run,
            [
                *console_command(),
                "replay",
                "--all",
                "--output-topic",
                "replayed.check",
                "--no-progress",
                "--json",
            ],
            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": up.bootstrap},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        replayed = json.loads(proc.stdout.strip().splitlines()[-1])
        log_text = up.log()

    # Every valid item: exactly one verdict, of its own text.
    for item_id, text in stream.valid.items():
        got = out.verdicts.get(item_id, [])
        assert len(got) == 1, (item_id, got)
        assert got[0]["text_sha256"] == sha(text)
        assert got[0]["model_version"] == listed
    # Issue 9: every actionable field, on real verdicts read off the stream.
    f = {item_id: out.verdicts[item_id][0] for item_id in ACTIONABLE}
    assert (f["fields-short"]["reasons"], f["fields-short"]["confidence"]) == (["too_short"], "low")
    assert f["fields-short"]["language"] == "en"
    assert f["fields-turkish"]["language"] == "tr" and f["fields-turkish"]["confidence"] == "low"
    assert "unsupported_language:tr" in f["fields-turkish"]["reasons"]
    assert f["fields-evaded"]["evasion"] == ["zero_width", "homoglyph"]
    assert f["fields-evaded"]["label"] == f["fields-clean"]["label"] == "ai"
    assert (
        f["fields-clean"]["evasion"] == [] and f["fields-clean"]["operating_point"] == "sensitive"
    )
    strict, clean = f["fields-strict"], f["fields-clean"]
    assert strict["operating_point"] == "strict" and strict["threshold"] > clean["threshold"]
    assert strict["score"] == clean["score"] and strict["confidence"] in ("high", "medium", "low")
    long = f["fields-long"]
    assert (long["scored_chars"], long["windows"], long["label"]) == (len(LONG), 39, "ai")
    spans = long["spans"]
    assert [spans[0]["start"], spans[-1]["end"]] == [0, len(LONG)]
    top = max(spans, key=lambda x: x["score"])
    assert top["start"] >= AI_START and top["end"] <= AI_END, top
    assert all(v["spans"] is None for k, v in f.items() if k != "fields-long")
    for item_id, verdict in f.items():  # the shim and the stream agree on every field
        shim = shim_fields[item_id]
        assert {k: v for k, v in shim.items() if k not in PER_SCORING} == {
            k: v for k, v in verdict.items() if k not in PER_SCORING
        }, item_id

    # Case 4: the tenants' items and the edit each got a verdict; the re-send did not.
    post1 = sorted((v["tenant"], v["text_sha256"]) for v in out.verdicts["post-1"])
    edits = sorted([("blog", sha(TEXT_A)), ("forum", sha(TEXT_A)), ("blog", sha(TEXT_B))])
    if with_redis:
        assert post1 == edits
        assert "dropped 1 duplicate" in log_text
    else:
        assert sorted(set(post1)) == edits and len(post1) <= 4, post1
    # The real item behind an id the attacker scored first through the shim: its verdict.
    assert sha(TEXT_B) in {v["text_sha256"] for v in out.verdicts["claimed-1"]}
    # Case 5: the shim's requests got their verdicts on the stream too, one each.
    assert sorted(v["tenant"] for v in out.verdicts["post-9"]) in (
        ["evil", "forum"],
        ["evil", "forum", "forum"],  # the retry: a ?via=stream request is always answered
    )
    # Cases 2, 3, 7: exactly one dead letter each, with its reason.
    letters = {}
    for value, headers, _ in out.dead:
        original = value if value in dead else next((r for r in dead if r.startswith(value)), None)
        assert original is not None, (value[:80], headers)
        assert original not in letters, f"two dead letters for {original[:60]!r}"
        letters[original] = headers
    assert letters.keys() == dead.keys()
    for raw, reason in dead.items():
        h = letters[raw]
        assert h["dlq.reason"] == reason, (raw[:60], h)
        if reason == "too_large":
            assert h[TRUNCATED_HEADER] == str(len(raw))
    # Case 3: the held item did not hold up the items behind it.
    held_failed = letters[held]["dlq.failed_at"]
    behind = [out.verdicts[f"valid-{i}"][0]["scored_at"] for i in range(60, 100)]
    assert max(behind) < held_failed, (max(behind), held_failed)

    n_items = len(stream.valid) + 4 + 1 + len(dead)
    print(
        f"\nhostile vs up: {n_items} items on detect.in ({len(stream.valid)} valid, "
        f"{len(dead)} hostile -> {len(out.dead)} dead letters), "
        f"{sum(len(v) for v in out.verdicts.values())} verdicts, all outcomes "
        f"{flowed_s:.1f}s after the first send ({sent_at - started:.1f}s sending); "
        f"splitter on 100k spaces {spaces_s * 1000:.0f} ms (/healthz {health_s * 1000:.0f} ms), "
        f"24,000-sentence detail 422 in {many_s * 1000:.0f} ms; replay --all read "
        f"{replayed.get('read')} records; "
        f"rss growth MB {sorted(round(g) for g in grown.values())}; "
        f"total {time.monotonic() - t0:.0f}s"
    )
