"""``bench pipeline``'s peer: what a user would write with FastStream's defaults instead of
this project's stages (which run in FastStream's loop too, with their own delivery rules).

One FastStream batch subscriber on the pipeline's input topic, scoring with the same detector
(loaded as a worker loads it, scored in one inference thread like a worker) and the same
verdict path (``consumers.scoring``: normalised, language detected, every window scored, the
verdict built by ``verdict_for``), publishing one verdict per item (the contract's
``Verdict``, keyed by item id) with ``acks="all"`` and awaiting every acknowledgement in the
handler; FastStream commits the batch's offsets after the handler
returns (``AckPolicy.ACK``, no auto-commit). No router hop: it is the framework's best case.
Same broker, same texts, same client options (linger, batch bytes, fetch wait) as the
pipeline, so the ratio measures the stage's handling (pipelined acks, held items, splits),
not a tuning difference.

Run it alone with ``python -m deepfake_stream.bench.peer SRC DST GROUP MAX_RECORDS MODEL_ID``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deepfake_stream.bench.flow import FlowRun, drive
from deepfake_stream.bench.procs import Children, python_module, settings_env
from deepfake_stream.bench.relay import ensure_bench_topics
from deepfake_stream.core.collector import serving_collector
from deepfake_stream.core.kafka import wait_for_broker
from deepfake_stream.core.settings import Settings, load_settings

WARMUP = 200


async def serve_peer(
    settings: Settings, src: str, dst: str, group: str, max_records: int, model_id: str
) -> None:
    """Run the FastStream peer until SIGTERM/SIGINT."""
    from faststream import AckPolicy, FastStream
    from faststream.kafka import KafkaBroker

    from deepfake_stream.consumers.scoring import prepare_all, score_prepared, verdict_for
    from deepfake_stream.core.liveness import now_ms
    from deepfake_stream.models.kinds import build_detector
    from deepfake_stream.models.registry import registry_for
    from deepfake_stream.schemas import InputItem, RoutedItem

    config = registry_for(settings).resolve(model_id)
    detector = build_detector(config.spec("cpu"))
    await detector.load()
    version = detector.version
    windows = settings.limits.max_windows
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peer-inference")
    k = settings.kafka
    broker = KafkaBroker(
        k.bootstrap_servers.split(","),
        acks="all",
        enable_idempotence=False,
        max_batch_size=k.producer_max_batch_bytes,
        linger_ms=k.producer_linger_ms,
        max_request_size=k.max_request_bytes,
        log_level=logging.WARNING,  # no line per message: errors still reach the child's log
    )

    @broker.subscriber(
        src,
        group_id=group,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=settings.worker.max_wait_ms or 1,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
        fetch_max_wait_ms=k.fetch_max_wait_ms,
        max_partition_fetch_bytes=max(1_048_576, k.max_request_bytes),
    )
    async def score(docs: list[dict[str, Any]]) -> None:  # FastStream parses the JSON
        seen = now_ms()
        items = [
            RoutedItem.first_hop(
                InputItem.model_validate(d),
                model_id=model_id,
                target="cpu",
                chain=["cpu"],
                first_seen_ms=seen,
                trace={},
            )
            for d in docs
        ]

        def work() -> list[Any]:
            prepared = prepare_all([i.text for i in items], config, windows)
            return list(zip(prepared, score_prepared(detector, prepared), strict=True))

        outcomes = await asyncio.get_running_loop().run_in_executor(executor, work)
        futures = []
        for item, (prepared, scored) in zip(items, outcomes, strict=True):
            verdict = verdict_for(
                item, prepared, scored, config=config, model_version=version, backend="cpu"
            )
            futures.append(
                await broker.publish(
                    verdict.model_dump_json().encode(),
                    topic=dst,
                    key=item.id.encode(),
                    no_confirm=True,
                )
            )
        await asyncio.gather(*futures)  # acks=all for every verdict before the commit

    app = FastStream(broker)
    try:
        with serving_collector("faststream peer"):  # like-for-like with the pipeline's stages
            await app.run()
    finally:
        executor.shutdown(wait=False)
        await detector.unload()


async def run_peer(
    settings: Settings,
    model_id: str,
    texts: Sequence[str],
    n: int,
    *,
    progress: bool | None = None,
    load_timeout: float = 300.0,
) -> FlowRun:
    """Saturation throughput of the FastStream peer for ``n`` items (after a warm-up)."""
    from deepfake_stream.bench.pipeline import items

    await wait_for_broker(settings)
    run_id = uuid.uuid4().hex[:8]
    src, dst = (f"bench-{run_id}.peer.{x}" for x in ("in", "verdicts"))
    await ensure_bench_topics(settings, [src, dst])
    with Children() as children:
        args = python_module(
            __name__,
            src,
            dst,
            f"bench-{run_id}.peer",
            str(settings.worker.max_batch_size),
            model_id,
        )
        children.start("faststream-peer", args, settings_env(settings))
        await drive(
            settings,
            in_topic=src,
            out_topic=dst,
            items=items(texts, WARMUP, f"pw{run_id}", model_id, "cpu"),
            timeout=load_timeout,
            label="faststream warm-up",
            progress=progress,
        )
        children.check()
        return await drive(
            settings,
            in_topic=src,
            out_topic=dst,
            items=items(texts, n, f"p{run_id}", model_id, "cpu"),
            timeout=max(120.0, n / 20),
            label=f"faststream {model_id}",
            progress=progress,
        )


def _main(argv: list[str]) -> int:
    src, dst, group, cap, model_id = argv
    # FastStream's app handles SIGTERM/SIGINT itself: it stops the subscriber gracefully.
    asyncio.run(serve_peer(load_settings(), src, dst, group, int(cap), model_id))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
