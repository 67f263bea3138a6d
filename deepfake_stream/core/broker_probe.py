"""Does a Kafka broker answer at KAFKA_BOOTSTRAP_SERVERS?

A Kafka handshake decides, not a TCP connect: something else listening on the port (a web
server, a stale process) accepts connections too, and the Kafka clients then wait out their
40 s request timeout before failing with a traceback. Every command that talks to the broker
asks here first (``require_broker``) and stops with one line saying what was tried and what
to do, exit code 2 (see ``deepfake_stream.cli``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Literal

from deepfake_stream.core.errors import ConfigError
from deepfake_stream.core.settings import Settings

HINT = (
    "start one with `make run` (or `.venv/bin/deepfake-stream up`), or set "
    "KAFKA_BOOTSTRAP_SERVERS (--kafka-bootstrap-servers) to a running broker"
)


class BrokerUnavailable(ConfigError):
    """No Kafka broker answers at the configured address: nothing a restart would fix."""


@dataclass(frozen=True)
class Probe:
    state: Literal["kafka", "nothing", "not_kafka"]
    """kafka: a broker answered; nothing: no connection; not_kafka: connected, no Kafka answer."""
    reason: str
    """What was tried and what happened (empty when a broker answered)."""

    @property
    def message(self) -> str:
        """One line for the user: what was tried and what to do."""
        return f"{self.reason}; {HINT}"


def _addresses(settings: Settings) -> list[tuple[str, int]]:
    out = []
    for entry in settings.kafka.bootstrap_servers.split(","):
        host, _, port = entry.strip().rpartition(":")
        out.append((host.strip("[]") or "127.0.0.1", int(port or 9092)))
    return out


def _tcp_open(addresses: list[tuple[str, int]], timeout: float) -> bool:
    for host, port in addresses:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            continue
    return False


async def _kafka_handshake(settings: Settings, timeout: float) -> str | None:
    """None when a broker answered a metadata request within ``timeout``, else why not."""
    from aiokafka.client import AIOKafkaClient

    from deepfake_stream.core.kafka import client_kwargs

    client = AIOKafkaClient(
        **client_kwargs(settings, role="probe"),
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return None
    except TimeoutError:
        return f"no Kafka answer within {timeout:g}s"
    except Exception as exc:  # any protocol failure means "not a broker we can use"
        return f"{type(exc).__name__}: {exc}".strip().rstrip(":")[:200]
    finally:
        # Closing a half-open connection to something that is not a broker may fail too.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), timeout)


async def probe(settings: Settings, timeout: float | None = None) -> Probe:
    """Ask the bootstrap servers for cluster metadata, with a short timeout."""
    timeout = timeout if timeout is not None else settings.kafka.probe_timeout_s
    where = settings.kafka.bootstrap_servers
    addresses = _addresses(settings)
    if not await asyncio.to_thread(_tcp_open, addresses, timeout):
        return Probe("nothing", f"no Kafka broker answers at {where} (nothing listens there)")
    # aiokafka logs each failed attempt at ERROR; the Probe's one line says it better.
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        why = await _kafka_handshake(settings, timeout)
    finally:
        aiokafka_log.setLevel(level)
    if why is None:
        return Probe("kafka", "")
    return Probe(
        "not_kafka",
        f"something listens at {where} but it does not answer as a Kafka broker "
        f"({settings.kafka.security_protocol}: {why})",
    )


def probe_sync(settings: Settings, timeout: float | None = None) -> Probe:
    """:func:`probe` for code outside an event loop (the CLI, before a command starts)."""
    return asyncio.run(probe(settings, timeout))


def require_broker(settings: Settings, timeout: float | None = None) -> None:
    """Raise :class:`BrokerUnavailable` (one line, what to do) unless a broker answers."""
    result = probe_sync(settings, timeout)
    if result.state != "kafka":
        raise BrokerUnavailable(result.message)
