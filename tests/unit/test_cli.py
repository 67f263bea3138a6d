"""The console script: commands, one flag per setting, flags over environment, clear errors."""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepfake_stream import cli
from deepfake_stream.commands import router as router_command
from deepfake_stream.core.settings import Settings, all_fields, env_name, flag_name
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


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Replace the router command's run() so main() hands us the settings it built."""
    seen: list[Settings] = []

    def run(args: argparse.Namespace, settings: Settings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(router_command, "run", run)
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


def test_every_setting_has_a_flag_named_after_its_env_var_on_every_command() -> None:
    parser, _ = cli.build_parser()
    for name, sub in subparsers(parser).items():
        flags = {opt for action in sub._actions for opt in action.option_strings}
        for group, field in all_fields():
            flag = "--" + env_name(group, field).lower().replace("_", "-")
            assert flag == flag_name(group, field)
            assert flag in flags, f"{name} lacks {flag}"


def test_subcommand_help_names_each_env_var(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["router", "--help"])
    out = capsys.readouterr().out
    for group, field in all_fields():
        assert env_name(group, field) in out


def test_flag_sets_the_setting(captured: list[Settings]) -> None:
    assert (
        cli.main(
            [
                "router",
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
    assert cli.main(["router"]) == 0
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
        cli.main(["router", "--kafka-bootstrap-servers", "from-flag:9092", "--http-port", "2222"])
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
    assert cli.main(["router", *argv]) == 2
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
