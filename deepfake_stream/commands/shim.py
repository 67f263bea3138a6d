"""Serve the HTTP shim on HTTP_HOST:HTTP_PORT: POST /v1/detect and /v1/detect/batch,
GET /v1/models, /healthz, /readyz, /metrics; OpenAPI docs at /docs.

Verdicts are computed in-process through the same registry and routing decision as the
stream (lowest latency); ?via=stream sends the item through the live pipeline instead.
Without DETECT_API_KEYS the shim only listens on a loopback address."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from deepfake_stream.core.settings import Settings

HELP = "serve the HTTP shim (REST API over the detectors and the pipeline)"
SETTINGS = (
    "kafka",
    "topics",
    "limits",
    "worker",
    "http",
    "api",
    "models",
    "metrics",
    "telemetry",
    "database",
)
EXAMPLES = """\
  deepfake-stream shim
  DETECT_API_KEYS=change-me:acme deepfake-stream shim --http-host 0.0.0.0 --http-port 8080
  deepfake-stream shim --http-rate-limit-rps 10 --timeout 60
"""
log = logging.getLogger("deepfake_stream.shim")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop cleanly after this many seconds (default: run until stopped)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.shim.auth import is_loopback, parse_keys

    host, port = settings.http.host, settings.http.port
    if not parse_keys(settings) and not is_loopback(host):
        log.error(
            "refusing to serve on %s without API keys: anyone who can reach it could use it. "
            "Set DETECT_API_KEYS (comma-separated keys, sent as X-API-Key), or listen on "
            "127.0.0.1 (HTTP_HOST / --http-host)",
            host,
        )
        return 2

    import uvicorn

    from deepfake_stream.shim import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=logging.getLevelName(logging.getLogger().level).lower(),
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.worker.shutdown_grace_s),
        log_config=None,  # keep the project's logging setup
    )
    server = uvicorn.Server(config)
    from deepfake_stream.core.telemetry import setup_telemetry

    setup_telemetry(settings, "shim")

    async def serve() -> None:
        if args.timeout is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(args.timeout, lambda: setattr(server, "should_exit", True))
        await server.serve()

    log.info(
        "HTTP shim on http://%s:%d (docs at /docs; API keys %s)",
        host,
        port,
        "required" if parse_keys(settings) else "not required on loopback",
    )
    # uvicorn drains on SIGTERM/Ctrl-C, then re-raises the signal against the handler it
    # found; a no-op one makes the drained stop a clean exit 0, like the other services.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    asyncio.run(serve())
    return 0 if server.started or args.timeout is not None else 1
