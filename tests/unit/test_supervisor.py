"""`up`'s supervisor with real (tiny) child processes: restarts, back-off, clean stop."""

from __future__ import annotations

import os
import signal
import sys
import time
import types
from pathlib import Path

import pytest

from deepfake_stream import supervisor as sup_module
from deepfake_stream.commands import up
from deepfake_stream.core.settings import load_settings
from deepfake_stream.embedded_broker import free_port
from deepfake_stream.supervisor import MAX_BACKOFF_S, STABLE_AFTER_S, Child, Supervisor

# The child's behaviour comes from its args, as `deepfake-stream <args>` would.
CHILD = """
import pathlib, signal, sys, time
mode = sys.argv[1]
if mode == "exit":
    sys.exit(3)
if mode == "config":
    print("12:00:00 INFO    [shim pid=1] x: starting", file=sys.stderr)
    print("12:00:00 ERROR   [shim pid=1] x: refusing: set DETECT_API_KEYS", file=sys.stderr)
    sys.exit(2)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path(sys.argv[2]).write_text("ready")
time.sleep(60)
"""


@pytest.fixture
def fake_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sup_module, "console_command", lambda: [sys.executable, "-c", CHILD])


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def monotonic(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(sup_module, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def pid(child: Child) -> int:
    assert child.process is not None
    return child.process.pid


def wait_exit(child: Child) -> None:
    assert child.process is not None
    child.process.wait(10)


def wait_ready(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"child never wrote {path}"
        time.sleep(0.01)


def test_exited_child_is_restarted_after_its_backoff(fake_console: None, clock: Clock) -> None:
    child = Child("crashy", ["exit"])
    supervisor = Supervisor([child])
    supervisor.start_all()
    first = pid(child)
    wait_exit(child)
    assert child.process is not None and child.process.returncode == 3

    supervisor.check()  # notices the exit, schedules the restart
    assert child.restart_at == clock.t + 1.0
    clock.t += 0.99
    supervisor.check()
    assert pid(child) == first and child.restarts == 0  # still backing off

    clock.t += 0.01
    supervisor.check()
    assert pid(child) != first
    assert child.restarts == 1
    assert child.restart_at is None
    wait_exit(child)


def test_configuration_error_is_not_restarted_and_names_the_reason(
    fake_console: None, clock: Clock, capfd: pytest.CaptureFixture[str]
) -> None:
    wrong = Child("shim", ["config"])
    crashy = Child("crashy", ["exit"])
    supervisor = Supervisor([wrong, crashy])
    supervisor.start_all()
    wait_exit(wrong)
    wait_exit(crashy)
    supervisor.check()
    assert supervisor.failed is wrong
    assert wrong.restart_at is None  # never scheduled for a restart
    assert crashy.restart_at is not None  # a crash still is
    assert wrong.reason() == "refusing: set DETECT_API_KEYS"
    clock.t += 60
    supervisor.check()
    assert wrong.restarts == 0
    assert "refusing: set DETECT_API_KEYS" in capfd.readouterr().err  # forwarded as it came
    wait_exit(crashy)


def test_backoff_doubles_up_to_the_cap(fake_console: None, clock: Clock) -> None:
    child = Child("crashy", ["exit"])
    supervisor = Supervisor([child])
    supervisor.start_all()
    delays = []
    for _ in range(8):
        wait_exit(child)
        supervisor.check()
        assert child.restart_at is not None
        delays.append(child.restart_at - clock.t)
        clock.t = child.restart_at
        supervisor.check()
        assert child.restart_at is None  # restarted
    wait_exit(child)
    assert delays == [1, 2, 4, 8, 16, MAX_BACKOFF_S, MAX_BACKOFF_S, MAX_BACKOFF_S]
    assert child.restarts == 8


def test_backoff_resets_after_a_stable_run(fake_console: None, clock: Clock) -> None:
    child = Child("crashy", ["exit"], backoff_s=16.0)
    supervisor = Supervisor([child])
    supervisor.start_all()
    wait_exit(child)
    clock.t += STABLE_AFTER_S + 1  # it "stayed up" longer than a minute
    supervisor.check()
    assert child.restart_at == clock.t + 1.0
    assert child.backoff_s == 2.0


def test_restart_happens_in_real_time(fake_console: None) -> None:
    child = Child("crashy", ["exit"], backoff_s=0.2)
    supervisor = Supervisor([child])
    supervisor.start_all()
    first = pid(child)
    wait_exit(child)
    noticed = time.monotonic()
    deadline = noticed + 5
    while pid(child) == first:
        assert time.monotonic() < deadline, "child was never restarted"
        supervisor.check()
        time.sleep(0.01)
    assert time.monotonic() - noticed >= 0.2
    wait_exit(child)


def test_stop_all_terminates_then_kills_after_grace(fake_console: None, tmp_path: Path) -> None:
    stubborn = Child("stubborn", ["ignore-term", str(tmp_path / "stubborn")])
    polite = Child("polite", ["sleep", str(tmp_path / "polite")])
    gone = Child("gone", ["exit"])
    supervisor = Supervisor([polite, stubborn, gone], grace_s=0.5)
    supervisor.start_all()
    wait_ready(tmp_path / "stubborn")  # its SIGTERM handler is in place
    wait_ready(tmp_path / "polite")
    wait_exit(gone)

    started = time.monotonic()
    supervisor.stop_all()
    took = time.monotonic() - started

    assert supervisor.stopping
    assert polite.process is not None and polite.process.returncode == -signal.SIGTERM
    assert stubborn.process is not None and stubborn.process.returncode == -signal.SIGKILL
    assert gone.process is not None and gone.process.returncode == 3
    assert 0.5 <= took < 5


def test_stop_all_is_quick_when_children_obey(fake_console: None, tmp_path: Path) -> None:
    children = [Child(f"c{i}", ["sleep", str(tmp_path / f"c{i}")]) for i in range(3)]
    supervisor = Supervisor(children, grace_s=20)
    supervisor.start_all()
    for i in range(3):
        wait_ready(tmp_path / f"c{i}")
    started = time.monotonic()
    supervisor.stop_all()
    assert time.monotonic() - started < 5
    assert all(c.process is not None and c.process.returncode == -signal.SIGTERM for c in children)


def test_up_children_use_the_standalone_command_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up, "_gpu_present", lambda: False)
    monkeypatch.setattr(up, "_modal_configured", lambda: False)
    settings = load_settings({("worker", "cpu_workers"): 2})
    children = up._children(settings)
    roles = [c.role for c in children]
    assert len(roles) == len(set(roles))
    assert "gpu-worker" not in roles and "modal-bridge" not in roles
    lines = {c.role: " ".join(c.command) for c in children}
    assert "deepfake-stream router" in lines["router"]
    workers = [c for c in children if c.role.startswith("cpu-worker")]
    assert len(workers) == 2
    for c in workers:
        assert Path(c.command[0]).name == "deepfake-stream"
        assert Path(c.command[0]).exists()
        assert "deepfake-stream worker --backend cpu" in " ".join(c.command)


def test_cpu_workers_share_the_cores_unless_the_operator_chose_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sup_module, "available_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    base = ["worker", "--backend", "cpu"]
    assert sup_module.cpu_worker_args(load_settings(), 2) == [*base, "--worker-threads-max", "2"]
    assert sup_module.cpu_worker_args(load_settings(), 3)[-1] == "1"
    assert sup_module.cpu_worker_args(load_settings(), 8)[-1] == "1"  # never 0 (= no limit)
    assert sup_module.cpu_worker_args(load_settings(), 1) == base  # alone: all its cores
    assert sup_module.cpu_worker_args(load_settings({("worker", "threads"): 3}), 2) == base
    assert sup_module.cpu_worker_args(load_settings({("worker", "threads_max"): 4}), 2) == base
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert sup_module.cpu_worker_args(load_settings(), 2) == base
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(up, "_gpu_present", lambda: False)
    children = up._children(load_settings({("worker", "cpu_workers"): 2}))
    workers = [c for c in children if c.role.startswith("cpu-worker")]
    assert [c.args for c in workers] == [[*base, "--worker-threads-max", "2"]] * 2


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_running_worker_is_findable_with_ps(tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    child = Child("cpu-worker-1", ["worker", "--backend", "cpu"])
    supervisor = Supervisor([child], env=env, grace_s=5)
    supervisor.start_all()
    try:
        cmdline = Path(f"/proc/{pid(child)}/cmdline")
        deadline = time.monotonic() + 5
        while "deepfake-stream worker" not in (
            line := cmdline.read_bytes().replace(b"\0", b" ").decode()
        ):
            assert time.monotonic() < deadline, line
            time.sleep(0.01)
        assert "deepfake-stream worker --backend cpu" in line
    finally:
        supervisor.stop_all()
    assert child.process is not None and child.process.returncode is not None
