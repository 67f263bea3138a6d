"""Every README example marked runnable runs as printed, against the embedded broker.

The rule, kept simple so that concurrent README edits cannot break it:

- An HTML comment on the line right before a ```bash or ```python fence marks the block:
  ``<!-- readme-test: run -->`` runs it; ``<!-- readme-test: run, expect REGEX -->`` also
  requires its output to match REGEX (dot matches newlines); ``<!-- readme-test: skip
  REASON -->`` skips it with that reason (e.g. `make run`, which runs until Ctrl-C).
- Unmarked blocks are reported as skipped ("not marked"), never failed: mark them.
- Before running, three things are rewritten, as a user's machine differs from the test's:
  ``.venv/bin/`` becomes the bin folder of the Python running the tests, ``127.0.0.1:9092``
  the test broker and ``127.0.0.1:8080`` a free port for the HTTP shim.
- ``deepfake-stream`` alone is the command of the Python running the tests, first on the
  PATH, as ``source .venv/bin/activate`` makes it (the README says so).
- Blocks run in a temporary folder, in the order they appear, with a router, a CPU worker and
  the verdict store serving the test's own topics (bash with ``-euo pipefail``; python with
  this Python). What a block leaves running in the background (``shim &``) is stopped after it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deepfake_stream.embedded_broker import free_port
from tests.conftest import unique_settings
from tests.integration.harness import cli_command, settings_env, wait_live

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(bash|sh|python)[ \t]*\n(.*?)^```", re.S | re.M)
MARK = re.compile(r"<!--\s*readme-test:\s*(run|skip)\b[\s,]*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    code: str
    mode: str  # "run", "skip" or "" (not marked)
    note: str  # run: "expect REGEX" or ""; skip: the reason

    @property
    def id(self) -> str:
        return f"README.md:{self.line}-{self.lang}"


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for fence in FENCE.finditer(text):
        before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.search(before)
        line = text.count("\n", 0, fence.start()) + 1
        blocks.append(
            Block(
                line=line,
                lang=fence.group(1),
                code=fence.group(2),
                mode=mark.group(1) if mark else "",
                note=mark.group(2) if mark else "",
            )
        )
    return blocks


BLOCKS = readme_blocks(README.read_text())


def test_the_rule_finds_the_marked_blocks() -> None:
    text = (
        "<!-- readme-test: run, expect a.*b -->\n```bash\necho a b\n```\n"
        "<!-- readme-test: skip runs for ever -->\n```bash\nmake run\n```\n"
        "```python\nprint(1)\n```\n"
    )
    got = [(b.mode, b.note, b.lang) for b in readme_blocks(text)]
    assert got == [
        ("run", "expect a.*b", "bash"),
        ("skip", "runs for ever", "bash"),
        ("", "", "python"),
    ]
    assert any(b.mode == "run" and b.lang == "bash" for b in BLOCKS)
    assert any(b.mode == "run" and b.lang == "python" for b in BLOCKS)


@pytest.fixture(scope="module")
async def system(kafka_bootstrap: str) -> AsyncIterator[dict[str, str]]:
    """A router, a CPU worker and the verdict store on the test's own topics; yields the
    blocks' environment."""
    settings = unique_settings(kafka_bootstrap, http__port=free_port())
    env = settings_env(settings)
    env.pop("DETECT_API_KEYS", None)  # the examples set their own
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    procs = [
        subprocess.Popen(cli_command(*args), env=env, stderr=subprocess.DEVNULL)
        for args in (["router"], ["worker", "--backend", "cpu"], ["store"])
    ]
    try:
        await wait_live(settings, "cpu", "tiny-tfidf", timeout=180)
        yield env
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _as_here(code: str, env: dict[str, str]) -> str:
    code = code.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    code = code.replace("127.0.0.1:9092", env["KAFKA_BOOTSTRAP_SERVERS"])
    return code.replace("127.0.0.1:8080", f"127.0.0.1:{env['HTTP_PORT']}")


def _run(block: Block, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = _as_here(block.code, env)
    argv = (
        [sys.executable, "-c", code]
        if block.lang == "python"
        else ["bash", "-euo", "pipefail", "-c", code]
    )
    # Files, not pipes: a background child (`shim &`) keeps a pipe open after bash exits.
    out_path, err_path = cwd / "stdout.txt", cwd / "stderr.txt"
    with open(out_path, "w") as out_file, open(err_path, "w") as err_file:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=out_file,
            stderr=err_file,
            text=True,
            start_new_session=True,  # its own group: what it leaves running is stopped below
        )
        try:
            proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    out, err = out_path.read_text(), err_path.read_text()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_example_runs_as_printed(
    block: Block, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if block.mode == "skip":
        pytest.skip(block.note or "marked skip")
    # An unmarked block fails rather than skips: a new README example is run or says why not.
    assert block.mode == "run", (
        "not marked: put <!-- readme-test: run --> or <!-- readme-test: skip WHY -->"
    )
    env = request.getfixturevalue("system")
    cwd = tmp_path_factory.mktemp("readme")
    done = _run(block, env, cwd)
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    if block.note.startswith("expect "):
        pattern = block.note.removeprefix("expect ")
        assert re.search(pattern, done.stdout, re.S), (
            f"{block.id}: no {pattern!r} in\n{done.stdout}"
        )
