"""The ``deepfake-stream`` console script.

Each sub-command lives in its own module under ``deepfake_stream/commands/`` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args, settings) -> int``. Every
setting is also a flag on every sub-command (``--kafka-bootstrap-servers`` for
``KAFKA_BOOTSTRAP_SERVERS``); flags win over the environment.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from pydantic import ValidationError

from deepfake_stream.core.errors import DetectError
from deepfake_stream.core.logs import setup_logging
from deepfake_stream.core.settings import GROUPS, all_fields, env_name, flag_name, load_settings

# Order is the order `--help` lists them in.
COMMANDS = [
    "up",
    "router",
    "worker",
    "modal-bridge",
    "shim",
    "produce",
    "tail",
    "replay",
    "store",
    "db",
    "verdicts",
    "models",
    "train",
    "evaluate",
    "calibrate",
    "bench",
    "topics",
    "asyncapi",
]

# One-shot commands that need the broker ask it first (a Kafka handshake with a short
# timeout), so a missing or wrong broker is one line and exit 2 instead of a traceback. The
# services (router, workers, Modal bridge) wait for it at start instead (kafka.wait_for_broker).
BROKER_COMMANDS = {"produce", "tail", "replay", "topics"}

EPILOG = """\
Every setting is an environment variable and a flag of the same name, e.g.
KAFKA_BOOTSTRAP_SERVERS / --kafka-bootstrap-servers. `{prog} <command> --help`
lists them all. Run `{prog} up` for the whole system on one machine.
"""


def _command_module(name: str) -> Any | None:
    try:
        return importlib.import_module(f"deepfake_stream.commands.{name.replace('-', '_')}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("deepfake_stream.commands"):
            return None  # not built yet: the command is simply not offered
        raise


def _literal(text: str) -> str:
    """argparse %-formats help strings: a bare "%" (e.g. "TPR@1%FPR") would crash --help."""
    return text.replace("%", "%%")


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also read from its environment variable)")
    for g, f in all_fields():
        info = GROUPS[g].model_fields[f]
        doc = (info.description or "").split("\n")[0]
        group.add_argument(
            flag_name(g, f),
            dest=f"setting__{g}__{f}",
            default=None,
            metavar="VALUE",
            help=_literal(f"{doc} [env {env_name(g, f)}; default {info.default!r}]"),
        )


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    from deepfake_stream.supervisor import runnable_command

    prog = runnable_command()
    parser = argparse.ArgumentParser(
        # As the user can type it here (".venv/bin/deepfake-stream" unless the venv is
        # active), so the usage lines and hints run as printed.
        prog=prog,
        description="Detect AI-generated text as an event-driven service on Kafka.",
        epilog=EPILOG.format(prog=prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, Any] = {}
    for name in COMMANDS:
        module = _command_module(name)
        if module is None:
            continue
        modules[name] = module
        p = sub.add_parser(
            name,
            help=_literal(module.HELP),
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        _settings_flags(p)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    setup_logging(args.log_level, role=args.command)
    overrides = {
        tuple(k.split("__")[1:]): v
        for k, v in vars(args).items()
        if k.startswith("setting__") and v is not None
    }
    log = logging.getLogger("deepfake_stream")
    try:
        settings = load_settings(overrides)  # type: ignore[arg-type]
        check_arguments = getattr(modules[args.command], "check_arguments", None)
        problem = check_arguments(args) if check_arguments else None
        if problem is not None:
            log.error("%s", problem)
            return 2
        if args.command in BROKER_COMMANDS and not getattr(args, "print_kafka_cli", False):
            from deepfake_stream.core.broker_probe import require_broker

            require_broker(settings)
        return int(modules[args.command].run(args, settings) or 0)
    except ValidationError as exc:
        err = exc.errors()[0]
        # Name the setting the way operators set it (HTTP_PORT / --http-port), not by the
        # bare field name ("port"), which several groups share.
        where = ".".join(map(str, err["loc"]))
        group = next((g for g, cls in GROUPS.items() if cls.__name__ == exc.title), None)
        if group and err["loc"] and err["loc"][0] in GROUPS[group].model_fields:
            field = str(err["loc"][0])
            where = f"{env_name(group, field)} / {flag_name(group, field)}"
        log.error("invalid setting %s: %s", where, err["msg"])
        return 2
    except DetectError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
