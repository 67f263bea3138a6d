"""Python's cyclic garbage collector, set for serving: off what startup loaded, and not run
for every few hundred objects a batch allocates.

Measured on 5,120 routed items through ``Worker.handle`` (tiny-tfidf, ``gc.callbacks`` timing
each collection; 2-core development machine, 2026-12-05):

- A CPU worker holds about 200,000 long-lived objects after startup (the TF-IDF vocabulary,
  language profiles, clients, the registry). Every full collection walked all of them,
  80-120 ms each, once every 2,500-5,000 items: 20-40 µs of each item's ~300 µs.
  ``gc.freeze()`` moves what exists into a permanent generation that collections skip.
- A young collection runs whenever the objects allocated and not yet freed pass the first
  threshold (700 by default). A batch builds a few thousand (records, items, windows, spans,
  verdicts) and frees them together, so ~190 young collections ran, together another 90-110
  ms: about 20 µs per item. With the threshold at ``YOUNG_THRESHOLD`` none ran at all.

Reference counting frees almost everything as before; only garbage in reference cycles waits
longer, at most ``YOUNG_THRESHOLD`` objects' worth.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 10_000
"""Objects allocated and not freed before a young collection runs (CPython's default: 700)."""

_PROCESS_THRESHOLDS = gc.get_threshold()
"""The thresholds restored on the way out: the process's own, not what an overlapping service
had set (saving those would leave the serving threshold behind after both stopped)."""


@contextmanager
def serving_collector(role: str) -> Iterator[None]:
    """Within the block, what was loaded before it is out of the collector's sight, and young
    collections wait for ``YOUNG_THRESHOLD`` objects.

    Both are undone on the way out, so a process that runs services one after another (tests,
    ``bench``) can still collect what an earlier one left behind. Where services overlap in one
    process (tests), the first to leave unfreezes what the other loaded and restores the
    process's thresholds: a cost, never a leak.
    Nothing is collected first: a full collection of a test process holding torch and several
    models takes seconds, and a service's own startup leaves little cyclic garbage."""
    thresholds = _PROCESS_THRESHOLDS
    gc.freeze()
    gc.set_threshold(max(thresholds[0], YOUNG_THRESHOLD), *thresholds[1:])
    log.debug("%s: %d objects frozen out of garbage collection", role, gc.get_freeze_count())
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
