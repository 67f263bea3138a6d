"""Run the whole system on one machine.

1. If nothing answers at KAFKA_BOOTSTRAP_SERVERS, start the embedded broker (Tansu,
   memory-only: nothing survives a restart) on that address.
2. Create missing topics (deepfake_stream/topics.yaml).
3. Start each service as a child process with its standalone command line: the router,
   WORKER_CPU_WORKERS CPU workers, the GPU worker when CUDA is present, the Modal bridge
   when Modal credentials are configured, and the HTTP shim (when installed). A child that
   dies is restarted with back-off.
4. Ctrl-C or SIGTERM: every service drains its batch and commits, then the broker stops.

--demo publishes a few sample texts once the CPU worker is live and prints their verdicts.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from deepfake_stream.core.settings import GROUPS, Settings, env_name

if TYPE_CHECKING:  # imported where used: a command loads only what it runs
    from deepfake_stream.supervisor import Child

HELP = "run the whole system on one machine (embedded broker if none answers)"
SETTINGS = tuple(GROUPS)  # its children read every setting: each flag is carried over to them
EXAMPLES = """\
  deepfake-stream up --demo
  deepfake-stream up --worker-cpu-workers 2 --metrics-port 9100
  KAFKA_BOOTSTRAP_SERVERS=kafka:9092 deepfake-stream up --timeout 600
"""
DEMO_FILE = Path(__file__).resolve().parent.parent / "demo.jsonl"
log = logging.getLogger("deepfake_stream.up")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--demo",
        action="store_true",
        help="publish sample texts once a worker is live and print verdicts",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop everything cleanly after N seconds (default: run until Ctrl-C or SIGTERM)",
    )


def _child_env(args: argparse.Namespace) -> dict[str, str]:
    """Children read settings from the environment: carry our flags over as variables."""
    env = dict(os.environ)
    for key, value in vars(args).items():
        if key.startswith("setting__") and value is not None:
            _, group, field = key.split("__")
            env[env_name(group, field)] = str(value)
    env["LOG_LEVEL"] = str(getattr(args, "log_level", "INFO"))
    return env


def _is_local(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _gpu_present() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def _modal_configured() -> bool:
    return bool(os.environ.get("MODAL_TOKEN_ID")) or Path("~/.modal.toml").expanduser().exists()


def _children(settings: Settings) -> list[Child]:
    from deepfake_stream.cli import _command_module
    from deepfake_stream.supervisor import Child, cpu_worker_args

    children = [Child("router", ["router"])]
    worker = cpu_worker_args(settings, settings.worker.cpu_workers)
    for i in range(settings.worker.cpu_workers):
        children.append(Child(f"cpu-worker-{i + 1}", list(worker)))
    if _gpu_present():
        children.append(Child("gpu-worker", ["worker", "--backend", "gpu"]))
    else:
        log.info("no CUDA device: the GPU worker is not started")
    if _command_module("modal-bridge") is not None:
        from deepfake_stream.models.registry import registry_for

        if not registry_for(settings).for_backend("modal"):
            log.info("no registered model runs on Modal: the Modal bridge is not started")
        elif _modal_configured():
            children.append(Child("modal-bridge", ["modal-bridge"]))
        else:
            log.info(
                "Modal is not configured (no MODAL_TOKEN_ID or ~/.modal.toml): "
                "the Modal bridge is not started"
            )
    if _command_module("store") is not None:
        children.append(Child("store", ["store"]))  # verdict history (DATABASE_URL)
    if _command_module("shim") is not None:
        children.append(Child("shim", ["shim"]))
    _assign_metrics_ports(children, settings)
    return children


def _assign_metrics_ports(children: list[Child], settings: Settings) -> None:
    """METRICS_PORT set: the router and workers serve /metrics on it, the next port, ...
    (a flag on each child's command line, so `ps` shows it). The shim serves /metrics on
    its own HTTP port."""
    port = settings.metrics.port
    for child in children:
        if child.role == "shim":
            child.args = [*child.args, "--metrics-port", "0"]
        elif port:
            child.args = [*child.args, "--metrics-port", str(port)]
            log.info("%s metrics at http://%s:%d/metrics", child.role, settings.metrics.host, port)
            port += 1


async def _demo(settings: Settings, stop: threading.Event) -> None:
    from deepfake_stream.core.reader import read_topic
    from deepfake_stream.core.service import liveness_view
    from deepfake_stream.producers.client import DetectProducer
    from deepfake_stream.supervisor import runnable_command

    async with liveness_view(settings) as view:
        while not view.alive("cpu") and not stop.is_set():
            await view.wait_changed(1.0)
    if stop.is_set():
        return
    run_id = uuid.uuid4().hex[:6]
    items = [json.loads(line) for line in DEMO_FILE.read_text().splitlines() if line.strip()]
    ids = set()
    started = time.monotonic()
    async with DetectProducer(settings=settings) as producer:
        for doc in items:
            doc["id"] = f"{doc['id']}-{run_id}"
            ids.add(doc["id"])
            await producer.send_item(producer.validate(json.dumps(doc).encode()))
    log.info(
        "demo: published %d texts to %s; waiting for their verdicts",
        len(ids),
        settings.topics.input,
    )
    async for arrival in read_topic(
        settings, settings.topics.verdicts, from_beginning=True, timeout=120
    ):
        v = arrival.json()
        if v.get("id") in ids:
            ids.discard(v["id"])
            written_by = (v.get("metadata") or {}).get("written_by", "?")
            print(
                f"  verdict {v['id']:<30} {v['label']:<5} score={v['score']:.3f} "
                f"(written by: {written_by}) model={v['model_id']} backend={v['backend']} "
                f"latency={v['latency_ms']:.0f}ms",
                flush=True,
            )
        if not ids or stop.is_set():
            break
    log.info(
        "demo: %d verdicts in %.1fs%s. A score is the model's estimate that a text is "
        "AI-written, not proof (README: 'What a verdict means'). Send your own: %s produce "
        "FILE.jsonl; watch: %s tail",
        len(items) - len(ids),
        time.monotonic() - started,
        f" ({len(ids)} missing)" if ids else "",
        runnable_command(),
        runnable_command(),
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.core.broker_probe import probe_sync
    from deepfake_stream.core.kafka import first_bootstrap
    from deepfake_stream.core.topics import ensure_topics
    from deepfake_stream.embedded_broker import EmbeddedBroker
    from deepfake_stream.supervisor import Supervisor

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    broker = None
    found = probe_sync(settings)
    if found.state == "kafka":
        log.info("using the Kafka broker at %s", settings.kafka.bootstrap_servers)
    elif found.state == "not_kafka":
        log.error(
            "%s; stop that service, or set KAFKA_BOOTSTRAP_SERVERS (--kafka-bootstrap-servers) "
            "to your Kafka broker or to a free local port for the embedded one",
            found.reason,
        )
        return 2
    else:
        host, port = first_bootstrap(settings)
        if not _is_local(host):
            log.error(
                "nothing answers at %s and it is not a local address; start Kafka there "
                "or point KAFKA_BOOTSTRAP_SERVERS at a local port for the embedded broker",
                settings.kafka.bootstrap_servers,
            )
            return 2
        broker = EmbeddedBroker(host=host, port=port).start()
    try:
        created = asyncio.run(ensure_topics(settings))
        if created:
            log.info("created topics: %s", ", ".join(created))
        env = _child_env(args)
        if broker is not None:  # Tansu: see KafkaSettings.leave_group_on_stop
            env.setdefault("KAFKA_LEAVE_GROUP_ON_STOP", "false")
        supervisor = Supervisor(
            _children(settings), env=env, grace_s=settings.worker.shutdown_grace_s
        )
        supervisor.start_all()
        if args.demo:
            threading.Thread(
                target=lambda: asyncio.run(_demo(settings, stop)), daemon=True, name="demo"
            ).start()
        log.info("up: %d services running; Ctrl-C to stop", len(supervisor.children))
        started = time.monotonic()
        code = 0
        while not stop.is_set():
            if args.timeout is not None and time.monotonic() - started > args.timeout:
                break
            if broker and broker.process and broker.process.poll() is not None:
                log.error(
                    "the embedded broker exited (code %s); its in-memory data is gone. Stopping.",
                    broker.process.returncode,
                )
                code = 1
                break
            supervisor.check()
            if supervisor.failed is not None:
                code = 2
                break
            time.sleep(0.5)
        log.info("stopping")
        supervisor.stop_all()
        if supervisor.failed is not None:
            log.error(
                "up stopped: %s cannot start with this configuration: %s",
                supervisor.failed.role,
                supervisor.failed.reason(),
            )
        return code
    finally:
        if broker:
            broker.stop()
            log.info("embedded broker stopped")
