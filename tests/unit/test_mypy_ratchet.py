"""tools/mypy_ratchet.py: the layout mirror mypy checks, and the ratchet's verdicts (mypy
itself runs in ``make types``, not here: it takes a minute on a cold cache)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ratchet() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("mypy_ratchet", ROOT / "tools/mypy_ratchet.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["mypy_ratchet"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["mypy_ratchet"]


def test_layout_mirrors_the_installed_package(
    ratchet: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratchet, "LAYOUT", tmp_path / "layout")
    top = ratchet.build_layout() / "deepfake_stream"
    assert (top / "consumers" / "isolate.py").resolve() == ROOT / "consumers" / "isolate.py"
    assert (top / "schemas" / "items.py").resolve() == ROOT / "schemas" / "items.py"
    assert (top / "core" / "settings.py").resolve() == ROOT / "deepfake_stream/core/settings.py"
    ratchet.build_layout()  # rebuilt in place


def test_paths_and_modules(ratchet: ModuleType) -> None:
    assert ratchet._repo_path("deepfake_stream/consumers/isolate.py") == "consumers/isolate.py"
    assert ratchet._repo_path("deepfake_stream/core/stage.py") == "deepfake_stream/core/stage.py"
    assert ratchet._module("deepfake_stream/schemas/__init__.py") == "deepfake_stream.schemas"
    patterns = ratchet._strict_patterns()
    assert ratchet._is_strict("deepfake_stream.core", patterns)
    assert ratchet._is_strict("deepfake_stream.schemas.items", patterns)
    assert not ratchet._is_strict("deepfake_stream.consumers.worker", patterns)
    assert not ratchet._is_strict("deepfake_stream.corefake", patterns)


@pytest.mark.parametrize(
    ("counts", "expected", "said"),
    [
        ({"deepfake_stream.store.db": 2}, 0, "as the baseline records"),
        ({"deepfake_stream.store.db": 3}, 1, "2 -> 3"),
        ({"deepfake_stream.store.db": 1}, 1, "--update"),
        ({"deepfake_stream.store.db": 2, "deepfake_stream.core.stage": 1}, 1, "must be 0"),
    ],
)
def test_the_ratchet(
    ratchet: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    counts: dict[str, int],
    expected: int,
    said: str,
) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"deepfake_stream.store.db": 2}))
    monkeypatch.setattr(ratchet, "BASELINE", baseline)
    lines = [f"{m}: error: x  [misc]" for m in counts]
    fake = (Counter(counts), lines, [*counts], 1)
    monkeypatch.setattr(ratchet, "run_mypy", lambda: fake)
    assert ratchet.main([]) == expected
    assert said in capsys.readouterr().out
