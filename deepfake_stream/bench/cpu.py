"""Where the CPU went during a benchmark phase: each process of the run, and the machine.

A goal the bench misses is only actionable with the reason beside it. On a machine of a
few cores the reason is usually whose CPU it was: the workers', or the broker's, the
router's, the bench's own producer and reader, another tenant's (``steal``, on a VM).
``CpuMeter`` reads ``/proc`` at the start and the end of a phase (two reads, nothing
sampled in between, so it costs the phase nothing). Linux only; elsewhere it reports
nothing and the goals say so.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
ROLES = ("up", "router", "worker", "store", "shim", "modal-bridge")
"""Words of a child's command line that name its role (``deepfake-stream worker ...``)."""


def descendants(root: int) -> list[int]:
    """``root`` and every process under it (children, grandchildren, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [root], [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, pp in parents.items() if pp == pid]
        found += kids
        todo += kids
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def role(pid: int) -> str:
    """What a process is to the run: ``router``, ``worker --backend cpu``, ``broker``, ..."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    words = [a.decode(errors="replace") for a in args if a]
    for marker in ROLES:
        if marker in words:
            i = words.index(marker)
            return " ".join(words[i : i + 3]) if marker == "worker" else marker
    if words and "tansu" in os.path.basename(words[0]):
        return "broker"
    return os.path.basename(words[0]) if words else str(pid)


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, steal) ticks of all cores so far, from /proc/stat; None where it is missing.
    Busy counts what ran here (user, nice, system, irq, softirq); steal is time the
    hypervisor gave another tenant while ours wanted to run."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return user + nice + system + irq + softirq, steal


@dataclass(kw_only=True)
class CpuShare:
    """One phase's CPU, each figure in percent of one core (``cores`` x 100 is all of it)."""

    seconds: float
    cores: int
    per_process: dict[str, float] = field(default_factory=dict)
    """Processes of the run by role; processes of one role (two workers) summed."""
    machine_percent: float | None = None
    """Everything that ran on the machine, ours or not."""
    steal_percent: float | None = None

    @property
    def full(self) -> bool:
        """The cores had (almost) nothing left: ≥ 90% busy, or taken by other tenants."""
        if self.machine_percent is None:
            return False
        return self.machine_percent + (self.steal_percent or 0) >= 0.9 * self.cores * 100

    @property
    def other_percent(self) -> float | None:
        """What ran on the machine outside this run's processes."""
        if self.machine_percent is None:
            return None
        return max(0.0, self.machine_percent - sum(self.per_process.values()))

    def summary(self) -> str:
        """One line: the machine, then each process largest first."""
        parts = [f"{name} {pct:.0f}%" for name, pct in self.per_process.items()]
        if self.other_percent is not None:
            parts.append(f"other {self.other_percent:.0f}%")
        if self.machine_percent is None:
            head = f"{self.cores} cores (machine total not readable)"
        else:
            head = f"cores {self.machine_percent:.0f}% of {self.cores * 100}%"
        if self.steal_percent and self.steal_percent >= 0.5:
            head += f" (+{self.steal_percent:.0f}% stolen by the host)"
        return f"{head}: " + ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 1)

        return {
            "seconds": round(self.seconds, 1),
            "cores": self.cores,
            "machine_percent": r(self.machine_percent),
            "steal_percent": r(self.steal_percent),
            "other_percent": r(self.other_percent),
            "per_process": {k: round(v, 1) for k, v in self.per_process.items()},
        }


class CpuMeter:
    """The CPU of ``root`` (default: this process) and its descendants between ``start``
    and ``stop``. The processes are the ones alive at ``start``."""

    def __init__(self, root: int | None = None, *, root_role: str = "bench") -> None:
        self.root = os.getpid() if root is None else root
        self.root_role = root_role
        self._before: dict[int, tuple[str, float]] = {}
        self._machine: tuple[int, int] | None = None
        self._t0 = 0.0

    def start(self) -> CpuMeter:
        self._before = {}
        if Path("/proc").is_dir():
            for pid in descendants(self.root):
                seconds = cpu_seconds(pid)
                if seconds is not None:
                    name = self.root_role if pid == self.root else role(pid)
                    self._before[pid] = (name, seconds)
        self._machine = _machine_ticks()
        self._t0 = time.monotonic()
        return self

    def stop(self) -> CpuShare:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        per: dict[str, float] = {}
        for pid, (name, before) in self._before.items():
            after = cpu_seconds(pid)
            used = 0.0 if after is None else max(0.0, after - before)  # gone: not counted
            per[name] = per.get(name, 0.0) + used / elapsed * 100
        share = CpuShare(
            seconds=elapsed,
            cores=os.cpu_count() or 1,
            per_process=dict(sorted(per.items(), key=lambda kv: -kv[1])),
        )
        now = _machine_ticks()
        if self._machine is not None and now is not None:
            share.machine_percent = (now[0] - self._machine[0]) / TICKS / elapsed * 100
            share.steal_percent = (now[1] - self._machine[1]) / TICKS / elapsed * 100
        return share
