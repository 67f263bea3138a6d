"""Child processes for the benchmarks: services as `up` runs them, with a given settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from deepfake_stream.core.settings import Settings, all_fields, env_name


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = dict(os.environ)
    for group, fld in all_fields():
        value = getattr(getattr(settings, group), fld)
        if value is None:
            env.pop(env_name(group, fld), None)
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[env_name(group, fld)] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Children:
    """Started processes, stopped with SIGTERM (then SIGKILL) on exit; logs kept in a temp dir."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log_dir = Path(tempfile.mkdtemp(prefix="deepfake-bench-"))

    def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(list(args), env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def check(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(
                    f"benchmark child {' '.join(map(str, p.args))} exited with {p.returncode}; "
                    f"see the logs in {self.log_dir}"
                )

    def stop(self, timeout: float = 20.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
