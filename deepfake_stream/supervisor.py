"""`deepfake-stream up`: every service as a child process, supervised.

Each child's command line is its standalone command (``deepfake-stream worker --backend
cpu``), so operators find and signal it with ``ps``/``kill``. A child that dies is restarted
with exponential back-off (reset once it has stayed up for a minute). Ctrl-C or SIGTERM stop
the services first (SIGTERM: each drains its batch and commits), then the embedded broker.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

STABLE_AFTER_S = 60.0
MAX_BACKOFF_S = 30.0


def console_command() -> list[str]:
    """How to start ``deepfake-stream`` again: the console script next to this Python."""
    script = Path(sys.executable).with_name("deepfake-stream")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "deepfake_stream"]


@dataclass
class Child:
    role: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 1.0
    restart_at: float | None = None

    @property
    def command(self) -> list[str]:
        return [*console_command(), *self.args]


@dataclass
class Supervisor:
    children: list[Child]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    grace_s: float = 20.0
    stopping: bool = False

    def start_child(self, child: Child) -> None:
        child.process = subprocess.Popen(child.command, env=self.env)
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
            log.info("stopping %s pid=%d", child.role, child.process.pid)  # type: ignore[union-attr]
            child.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
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
