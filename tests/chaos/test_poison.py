"""1% poison mixed into 20,000 items: every poison message is dead-lettered with the right
reason, and the healthy items flow at >= 0.80 x the rate of a clean run on the same `up`."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.chaos.streams import Watcher, accounting, healthy, publish, report
from tests.integration.test_pipeline import MALFORMED
from tests.system import deepfake_up, wait_for_verdict_of

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow]

N = 20_000
POISON_EVERY = 100  # 1%
ROUNDS = 2  # clean/mixed pairs at most: the best of each absorbs a noisy neighbour's burst


async def _timed_run(watch: Watcher, bootstrap: str, prefix: str, poisoned: bool) -> float:
    """Publish N healthy items (plus 1% poison when ``poisoned``); seconds until the last
    healthy verdict (and, when poisoned, the last expected dead letter)."""
    items: list[tuple[str | None, bytes]] = []
    kinds = list(MALFORMED.values())
    dead_before = len(watch.out.dead)
    for n, item in enumerate(healthy(prefix, N)):
        items.append(item)
        if poisoned and n % POISON_EVERY == POISON_EVERY - 1:
            items.append((None, kinds[(n // POISON_EVERY) % len(kinds)][0]))
    poison = len(items) - N
    ids = {f"{prefix}-{i}" for i in range(N)}
    started = time.monotonic()
    await publish(bootstrap, items)
    done = await watch.wait(
        lambda o: ids.issubset(o.verdicts) and len(o.dead) >= dead_before + poison, timeout=300
    )
    assert done, f"{prefix}: {len(ids - set(watch.out.verdicts))} items without a verdict"
    return time.monotonic() - started


async def test_one_percent_poison_is_dead_lettered_and_healthy_throughput_holds(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    with deepfake_up(tmp_path, MAX_TEXT_CHARS="2000") as up:
        await wait_for_verdict_of(up.bootstrap, "probe-0")
        async with Watcher(up.bootstrap) as watch:
            clean: list[float] = []
            mixed: list[float] = []
            for r in range(ROUNDS):
                clean.append(await _timed_run(watch, up.bootstrap, f"c{r}", poisoned=False))
                mixed.append(await _timed_run(watch, up.bootstrap, f"m{r}", poisoned=True))
                if N / min(mixed) >= 0.80 * N / min(clean):
                    break
        out = watch.out
    rounds = len(clean)
    all_ids = [f"{p}{r}-{i}" for r in range(rounds) for p in "cm" for i in range(N)]
    items, lost, dups = accounting(out, all_ids)

    # Every poison message: dead-lettered once, original bytes, the reason its kind deserves.
    expected: Counter[bytes] = Counter()
    for _ in range(rounds):
        for n in range(N // POISON_EVERY):
            expected[list(MALFORMED.values())[n % len(MALFORMED)][0]] += 1
    got = Counter(value for value, _, _ in out.dead)
    assert got == expected, "each poison message has exactly one dead letter"
    reasons = {value: reason for value, reason in MALFORMED.values()}
    for value, headers, _ in out.dead:
        assert headers["dlq.reason"] == reasons[value], headers
        assert headers["dlq.stage"] == "router"

    clean_rate, mixed_rate = N / min(clean), N / min(mixed)
    ratio = mixed_rate / clean_rate
    report(
        "poison-1pct",
        items,
        lost,
        dups,
        sum(clean) + sum(mixed),
        poison=sum(expected.values()),
        clean_items_per_s=[round(N / t) for t in clean],
        mixed_healthy_items_per_s=[round(N / t) for t in mixed],
        ratio=f"{ratio:.2f}",
    )
    assert lost == 0
    assert ratio >= 0.80, (
        f"healthy throughput with poison {mixed_rate:.0f}/s < 0.80 x {clean_rate:.0f}/s"
    )
