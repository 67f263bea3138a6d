"""Logging: one line per event, with the role so `up`'s interleaved children stay readable."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(level: str = "INFO", *, role: str) -> None:
    level = os.environ.get("LOG_LEVEL", level).upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s %(levelname)-7s [{role} pid=%(process)d] %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every rebalance and retry at INFO/WARNING; keep ours readable.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
