"""How many CPU cores this process may use (its affinity mask, not the machine's count).

A container or ``taskset`` may give a process fewer cores than the machine has; thread
counts chosen from ``os.cpu_count()`` would then oversubscribe them."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        return os.cpu_count() or 1
