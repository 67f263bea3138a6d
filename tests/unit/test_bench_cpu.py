"""bench/cpu.py against the real /proc: a child that spins is seen, by its role."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepfake_stream.bench.cpu import CpuMeter, CpuShare

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc (Linux)")

SPIN = "import time\nend = time.monotonic() + 3\nwhile time.monotonic() < end: pass"


def test_a_spinning_child_is_counted_under_its_role() -> None:
    # the role comes from the command line: a child whose argv holds "router" is the router
    child = subprocess.Popen([sys.executable, "-c", SPIN, "router"])
    try:
        time.sleep(0.2)
        meter = CpuMeter().start()
        time.sleep(1.5)
        got = meter.stop()
    finally:
        child.wait(10)
    assert got.per_process["router"] > 50  # one busy core is ~100; shared cores, so loose
    assert got.per_process["bench"] < 30  # this process slept
    assert got.machine_percent is not None and got.machine_percent >= got.per_process["router"]
    assert got.cores >= 1 and 1.4 < got.seconds < 3
    assert "router" in got.summary()


def test_a_process_gone_before_stop_counts_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass", "worker", "--backend", "cpu"])
    time.sleep(0.3)  # alive or not at start: either way no negative share
    meter = CpuMeter().start()
    child.wait(10)
    got = meter.stop()
    assert all(v >= 0 for v in got.per_process.values())


def test_share_summary_and_fullness() -> None:
    full = CpuShare(
        seconds=5, cores=2, machine_percent=185, steal_percent=10, per_process={"broker": 60}
    )
    assert full.full and full.other_percent == 125
    assert full.summary() == "cores 185% of 200% (+10% stolen by the host): broker 60%, other 125%"
    unknown = CpuShare(seconds=5, cores=2, per_process={"broker": 60})
    assert not unknown.full and unknown.other_percent is None
    assert unknown.summary() == "2 cores (machine total not readable): broker 60%"
    assert unknown.as_dict()["per_process"] == {"broker": 60.0}
