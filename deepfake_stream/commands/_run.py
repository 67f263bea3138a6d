"""Shared helpers for long-running commands."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable


def add_bounded_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        help="stop after this many messages (default: run until stopped)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop after this many seconds (default: run until stopped)",
    )


def run_until_signalled(serve: Callable[[asyncio.Event], Awaitable[object]]) -> int:
    """Run a service; SIGTERM or Ctrl-C drain the batch in flight, commit, and exit 0."""
    from deepfake_stream.core.service import stop_on_signals

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await serve(stop)

    asyncio.run(main())
    # Drained and committed: a second SIGTERM during interpreter teardown (a supervisor
    # stopping everyone) must not turn a clean exit into "killed by signal".
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 0
