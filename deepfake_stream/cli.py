"""The ``deepfake-stream`` console script.

Each sub-command lives in its own module under ``deepfake_stream/commands/`` and exposes
``HELP`` (one line), ``SETTINGS`` (the settings groups it uses, names of
``core.settings.GROUPS``), ``EXAMPLES`` (a few real invocations), ``add_arguments(parser)``
and ``run(args, settings) -> int``. Each setting of a command's groups is also a flag of that
command (``--kafka-bootstrap-servers`` for ``KAFKA_BOOTSTRAP_SERVERS``), and flags win over
the environment. A command rejects the flag of a setting it does not use, naming the commands
that do; every setting is still read from the environment by every command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import shutil
import sys
import textwrap
import types
from typing import Any

from pydantic import ValidationError

from deepfake_stream.core.errors import DetectError
from deepfake_stream.core.logs import setup_logging
from deepfake_stream.core.settings import GROUP_TITLES, GROUPS, env_name, flag_name, load_settings

# How the top-level `--help` lists the commands: by what a person wants to do.
COMMAND_GROUPS: dict[str, list[str]] = {
    "run the system": ["up", "router", "worker", "modal-bridge", "shim", "store"],
    "operate": ["produce", "tail", "replay", "topics", "db", "verdicts"],
    "models": ["models", "train", "evaluate", "calibrate"],
    "tools": ["bench", "asyncapi"],
}
# Order is the order `--help` lists them in.
COMMANDS = [name for names in COMMAND_GROUPS.values() for name in names]

# One-shot commands that need the broker ask it first (a Kafka handshake with a short
# timeout), so a missing or wrong broker is one line and exit 2 instead of a traceback. The
# services (router, workers, Modal bridge) wait for it at start instead (kafka.wait_for_broker).
BROKER_COMMANDS = {"produce", "tail", "replay", "topics"}

SERVER_INSTALL = "pip install 'deepfake-stream[server]'"

EPILOG = """\
Every setting is an environment variable, and a flag of the same name on each command that
uses it, e.g. KAFKA_BOOTSTRAP_SERVERS / --kafka-bootstrap-servers; a flag wins.
`{prog} <command> --help` lists a command's options and its settings, by group.
Run `{prog} up` for the whole system on one machine.
"""

COMMAND_EPILOG = """\
Each setting flag is also read from its environment variable (env NAME above), which
every command reads; a flag wins. `{prog} up --help` lists every setting.
"""


def _command_module(name: str) -> Any | None:
    try:
        return importlib.import_module(f"deepfake_stream.commands.{name.replace('-', '_')}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("deepfake_stream.commands"):
            return None  # not built yet: the command is simply not offered
        raise


def _missing_package(exc: ModuleNotFoundError) -> str | None:
    """The top-level package a client-only install lacks, or None (our own bug: re-raise)."""
    if not exc.name or exc.name.split(".")[0] == "deepfake_stream":
        return None
    return exc.name.split(".")[0]


def _needs_server(name: str, missing: str) -> str:
    return (
        f"`deepfake-stream {name}` needs the package {missing}, which this install lacks "
        f"(the client-only install): {SERVER_INSTALL}"
    )


def _unavailable(name: str, missing: str) -> types.SimpleNamespace:
    """Stands in for a command whose module cannot be imported without the server extra, so
    `--help` still lists it and running it says what to install."""
    return types.SimpleNamespace(
        HELP=f"(needs {SERVER_INSTALL}: {missing} is not installed)",
        __doc__=_needs_server(name, missing),
        MISSING=missing,
        add_arguments=lambda parser: None,
    )


def _literal(text: str) -> str:
    """argparse %-formats help strings: a bare "%" (e.g. "TPR@1%FPR") would crash --help."""
    return text.replace("%", "%%")


def _first_sentence(text: str) -> str:
    """A setting's docstring may run to a paragraph; its help shows the first sentence."""
    flat = " ".join(text.split())
    return flat.split(". ")[0].rstrip(".") + "." if flat else ""


def _settings_flags(parser: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """One argument group per settings group the command uses, in GROUPS order."""
    for g in (g for g in GROUPS if g in groups):
        cls = GROUPS[g]
        described = (cls.__doc__ or "").strip()
        group = parser.add_argument_group(f"{GROUP_TITLES[g]} settings", described)
        for f, info in cls.model_fields.items():
            doc = _first_sentence(info.description or "")
            group.add_argument(
                flag_name(g, f),
                dest=f"setting__{g}__{f}",
                default=None,
                metavar="VALUE",
                help=_literal(f"{doc} [env {env_name(g, f)}; default {info.default!r}]"),
            )


def _as_typed(text: str, prog: str) -> str:
    """Examples are written with `deepfake-stream`; print them as the user can run them."""
    return re.sub(r"(?<![\w/.-])deepfake-stream(?= )", prog, text)


def _command_list(modules: dict[str, Any]) -> str:
    """The top-level help's list of commands, grouped, one line each (wrapped to fit)."""
    width = max(40, shutil.get_terminal_size().columns - 2)
    name_width = max(len(n) for n in modules) + 2
    grouped = {title: [n for n in names if n in modules] for title, names in COMMAND_GROUPS.items()}
    others = [n for n in modules if n not in COMMANDS]
    if others:
        grouped["other"] = others
    blocks = []
    for title, names in grouped.items():
        if not names:
            continue
        lines = [f"{title}:"]
        for n in names:
            lines += textwrap.wrap(
                modules[n].HELP,
                width=width,
                initial_indent=f"  {n:<{name_width}}",
                subsequent_indent=" " * (name_width + 2),
                break_long_words=False,
                break_on_hyphens=False,
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    from deepfake_stream.supervisor import runnable_command

    prog = runnable_command()
    modules: dict[str, Any] = {}
    for name in COMMANDS:
        try:
            module = _command_module(name)
        except ModuleNotFoundError as exc:
            missing = _missing_package(exc)
            if missing is None:
                raise
            module = _unavailable(name, missing)
        if module is not None:
            modules[name] = module
    parser = argparse.ArgumentParser(
        # As the user can type it here (".venv/bin/deepfake-stream" unless the venv is
        # active), so the usage lines and hints run as printed.
        prog=prog,
        description="Detect AI-generated text as an event-driven service on Kafka.\n\n"
        + _command_list(modules),
        epilog=EPILOG.format(prog=prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        help=f"one of the commands above; `{prog} COMMAND --help` shows its options",
    )
    for name, module in modules.items():
        # No help= here: the grouped list in the description is the list of commands.
        if hasattr(module, "MISSING"):
            # Accepts anything (--help included): running it says what to install.
            sub.add_parser(name, add_help=False, description=module.__doc__)
            continue
        examples = getattr(module, "EXAMPLES", "").strip("\n")
        epilog = COMMAND_EPILOG.format(prog=prog)
        if examples:
            epilog = f"examples:\n{_as_typed(examples, prog)}\n\n{epilog}"
        p = sub.add_parser(
            name,
            description=module.__doc__,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        # The usage line shows the command's own arguments; its settings are listed below.
        own = p._get_formatter()
        own.add_usage(None, list(p._actions), list(p._mutually_exclusive_groups), prefix="usage: ")
        settings = tuple(getattr(module, "SETTINGS", ()))
        _settings_flags(p, settings)
        p.usage = _literal(own.format_help().strip().removeprefix("usage: ")) + (
            " [--SETTING VALUE ...]" if settings else ""
        )
    return parser, modules


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _reject_extras(parser: argparse.ArgumentParser, command: str | None, extras: list[str]) -> None:
    """Exit 2 as argparse would; a setting flag the command does not use says so and names
    the commands that take it (its environment variable is still read by every command)."""
    subs = _subparsers(parser)
    settings = {flag_name(g, f): (g, f) for g in GROUPS for f in GROUPS[g].model_fields}
    for token in extras:
        flag = token.split("=", 1)[0]
        if command and flag in settings:
            group, field = settings[flag]
            users = [n for n, p in subs.items() if flag in p._option_string_actions]
            subs[command].error(
                f"{flag}: `{command}` uses no {GROUP_TITLES[group]} settings (the commands "
                f"that do: {', '.join(users)}); {env_name(group, field)} in the environment "
                "is read by every command"
            )
    parser.error("unrecognized arguments: " + " ".join(extras))


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args, extras = parser.parse_known_args(argv)
    if not args.command:
        if extras:
            _reject_extras(parser, None, extras)
        parser.print_help()
        return 2
    module = modules[args.command]
    setup_logging(args.log_level, role=args.command)
    log = logging.getLogger("deepfake_stream")
    if hasattr(module, "MISSING"):
        log.error("%s", _needs_server(args.command, module.MISSING))
        return 2
    if extras:
        _reject_extras(parser, args.command, extras)
    overrides: dict[tuple[str, str], Any] = {}
    for k, v in vars(args).items():
        if k.startswith("setting__") and v is not None:
            _, group_name, field_name = k.split("__", 2)  # setting__<group>__<field>
            overrides[(group_name, field_name)] = v
    try:
        settings = load_settings(overrides)
        check_arguments = getattr(module, "check_arguments", None)
        problem = check_arguments(args) if check_arguments else None
        if problem is not None:
            log.error("%s", problem)
            return 2
        if args.command in BROKER_COMMANDS and not getattr(args, "print_kafka_cli", False):
            from deepfake_stream.core.broker_probe import require_broker

            require_broker(settings)
        return int(module.run(args, settings) or 0)
    except ModuleNotFoundError as exc:
        # A server command run in a client-only install (`pip install deepfake-stream`).
        missing = _missing_package(exc)
        if missing is None:
            raise
        log.error("%s", _needs_server(args.command, missing))
        return 2
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
