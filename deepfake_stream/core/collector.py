"""Keep Python's cyclic garbage collector off what a service loads once.

A CPU worker holds about 200,000 long-lived objects after startup (the TF-IDF vocabulary,
language profiles, clients, the registry). Every full collection walks all of them: 80-120 ms
on the development machine, and at saturation one came every 2,500-5,000 items, i.e. 20-40 µs
of each item's ~300 µs (``gc.callbacks`` timing ``Worker.handle`` on 5,120 routed items).
``gc.freeze()`` moves what exists into a permanent generation that collections skip, so they
walk only what was made since; reference counting still frees everything as before.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def startup_frozen(role: str) -> Iterator[None]:
    """Within the block, what was loaded before it is out of the collector's sight.

    Unfrozen on the way out, so a process that runs several services one after another (tests,
    ``bench``) can still collect what an earlier one left behind. Nothing is collected first:
    a full collection of a test process holding torch and several models takes seconds, and a
    service's own startup leaves little cyclic garbage."""
    gc.freeze()
    log.debug("%s: %d objects frozen out of garbage collection", role, gc.get_freeze_count())
    try:
        yield
    finally:
        gc.unfreeze()
