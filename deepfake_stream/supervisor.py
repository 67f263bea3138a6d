"""`deepfake-stream up`: every service as a child process, supervised.

Each child's command line is its standalone command (``deepfake-stream worker --backend
cpu``), so operators find and signal it with ``ps``/``kill``. A child that crashes is
restarted with exponential back-off (reset once it has stayed up for a minute). A child that
exits with CONFIG_ERROR refused to start because of its configuration: a restart would fail
the same way, so the supervisor marks it ``failed`` with the reason it logged, and ``up``
stops everything and exits non-zero. Ctrl-C or SIGTERM stop the services first (SIGTERM: each
drains its batch and commits), then the embedded broker.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_stream.core.cores import available_cores
from deepfake_stream.core.settings import Settings, flag_name

log = logging.getLogger(__name__)

STABLE_AFTER_S = 60.0
MAX_BACKOFF_S = 30.0
# The exit code of every command whose settings are wrong (deepfake_stream.cli: invalid
# setting, ConfigError, no broker, the shim refusing an open address without keys).
CONFIG_ERROR = 2
# "12:00:00 ERROR   [shim pid=12] deepfake_stream.shim: refusing ..." -> "refusing ..."
_ERROR_LINE = re.compile(r" ERROR +\[[^\]]*\] [\w.]+: (?P<message>.*)")


def console_command() -> list[str]:
    """How to start ``deepfake-stream`` again: the console script next to this Python."""
    script = Path(sys.executable).with_name("deepfake-stream")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "deepfake_stream"]


def cpu_worker_args(settings: Settings, workers: int) -> list[str]:
    """The command line (after the program) of one of ``workers`` CPU workers on this
    machine: each tunes its torch threads up to its share of the cores, a flag so that `ps`
    shows it. Without a share, two workers on two cores each tried two threads; OpenMP threads
    spin-wait for each other, and `bench pipeline` measured `small-perplexity` at 0.73 and
    `medium-embedding` at 0.68 of their offline speed, against 0.91 and 0.86 with one worker.
    Nothing is added when the operator fixed the threads or their limit."""
    args = ["worker", "--backend", "cpu"]
    w = settings.worker
    if workers < 2 or w.threads or w.threads_max or os.environ.get("OMP_NUM_THREADS"):
        return args
    cores = available_cores()
    share = max(1, cores // workers)
    log.info("%d CPU workers on %d cores: each tunes up to %d torch threads", workers, cores, share)
    return [*args, flag_name("worker", "threads_max"), str(share)]


def runnable_command() -> str:
    """``deepfake-stream`` as the user can type it here: the bare name when the shell finds
    this very script (an activated venv), else its path (``.venv/bin/deepfake-stream`` after
    ``make run``), so the hints the commands print run as printed."""
    script = Path(sys.executable).with_name("deepfake-stream")
    found = shutil.which("deepfake-stream")
    if found and Path(found).resolve() == script.resolve():
        return "deepfake-stream"
    if not script.exists():
        return f"{Path(sys.executable).name} -m deepfake_stream"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


@dataclass
class Child:
    role: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 1.0
    restart_at: float | None = None
    last_error: str = ""
    """The last ERROR line the child logged (without its prefix): why it stopped."""
    forwarder: threading.Thread | None = None

    @property
    def command(self) -> list[str]:
        return [*console_command(), *self.args]

    def reason(self) -> str:
        """Why the child stopped, as it said it; waits briefly for its last lines."""
        if self.forwarder is not None:
            self.forwarder.join(2.0)  # the child has exited: its pipe is about to close
        return self.last_error or "see its log above"


@dataclass
class Supervisor:
    children: list[Child]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    grace_s: float = 20.0
    stopping: bool = False
    failed: Child | None = None
    """A child that exited with CONFIG_ERROR: not restarted; ``up`` stops everything."""

    def start_child(self, child: Child) -> None:
        # stderr passes through a thread that forwards every line and remembers the last
        # ERROR, so a configuration error can be repeated as the reason `up` stops.
        child.process = subprocess.Popen(child.command, env=self.env, stderr=subprocess.PIPE)
        child.forwarder = threading.Thread(
            target=_forward_stderr, args=(child, child.process), daemon=True, name=child.role
        )
        child.forwarder.start()
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info(
            "started %-12s pid=%-7d %s",
            child.role,
            child.process.pid,
            " ".join(["deepfake-stream", *child.args]),
        )

    def start_all(self) -> None:
        for child in self.children:
            self.start_child(child)

    def check(self) -> None:
        """Restart children that died (called periodically)."""
        now = time.monotonic()
        for child in self.children:
            proc = child.process
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self.start_child(child)
                continue
            if proc is None or proc.poll() is None:
                continue
            if proc.returncode == CONFIG_ERROR:
                if self.failed is None:
                    self.failed = child
                    log.error(
                        "%s pid=%d exited with code %d, a configuration error: %s. Not "
                        "restarting it (it would fail the same way).",
                        child.role,
                        proc.pid,
                        proc.returncode,
                        child.reason(),
                    )
                continue
            if now - child.started_at > STABLE_AFTER_S:
                child.backoff_s = 1.0
            log.warning(
                "%s pid=%d exited with code %s; restarting in %.0fs (restart #%d)",
                child.role,
                proc.pid,
                proc.returncode,
                child.backoff_s,
                child.restarts + 1,
            )
            child.restart_at = now + child.backoff_s
            child.backoff_s = min(child.backoff_s * 2, MAX_BACKOFF_S)

    def stop_all(self) -> None:
        """SIGTERM everyone (they drain and commit), then SIGKILL whoever outlives the grace."""
        self.stopping = True
        running = [c for c in self.children if c.process and c.process.poll() is None]
        for child in reversed(running):
            assert child.process is not None
            log.info("stopping %s pid=%d", child.role, child.process.pid)
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s pid=%d did not stop in %.0fs; killing it",
                    child.role,
                    child.process.pid,
                    self.grace_s,
                )
                child.process.kill()
                child.process.wait()
            log.info(
                "%s pid=%d stopped (code %s)",
                child.role,
                child.process.pid,
                child.process.returncode,
            )


def _forward_stderr(child: Child, process: subprocess.Popen[bytes]) -> None:
    assert process.stderr is not None
    for raw in process.stderr:
        line = raw.decode("utf-8", "replace")
        sys.stderr.write(line)
        sys.stderr.flush()
        if match := _ERROR_LINE.search(line):
            child.last_error = match["message"].strip()
