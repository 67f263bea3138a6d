"""The structure the README describes, checked: one installed name, and floors whose imports
point down.

Every import counts, also those inside functions and under ``TYPE_CHECKING``: a lazy import
upwards is still a dependency upwards, only a later-failing one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FEATURE_FOLDERS = ("consumers", "producers", "routing", "models", "schemas")

# Lowest first. A module may import its own floor and the floors below it, never above.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("deepfake_stream.core",)),
    ("schemas", ("deepfake_stream.schemas",)),
    ("text", ("deepfake_stream.text",)),
    ("models", ("deepfake_stream.models",)),
    ("routing", ("deepfake_stream.routing",)),
    ("consumers", ("deepfake_stream.consumers",)),
    ("producers", ("deepfake_stream.producers",)),
    ("store", ("deepfake_stream.store",)),
    # the shell: the command line, services' supervisor, the HTTP shim, the benchmarks
    ("shell", ("deepfake_stream",)),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts[0] in FEATURE_FOLDERS:
        parts = ["deepfake_stream", *parts]
    return ".".join(parts)


def _source_files() -> list[Path]:
    folders = ("deepfake_stream", *FEATURE_FOLDERS)
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # `from deepfake_stream import core` imports the submodule deepfake_stream.core
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _floor(module: str) -> int | None:
    """The floor of the longest prefix that names ``module`` (the shell's is the shortest)."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), index)
    return None if best is None else best[1]


def test_nothing_imports_a_feature_by_its_bare_folder_name() -> None:
    """`import models` would find an application's own models.py next to ours."""
    offenders = []
    files = _source_files() + sorted((ROOT / "tests").rglob("*.py"))
    files += sorted((ROOT / "deploy").rglob("*.py"))
    for path in files:
        for line, module in _imports(path):
            if module.split(".")[0] in FEATURE_FOLDERS:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: import {module}")
    assert not offenders, "import these as deepfake_stream.<package>:\n" + "\n".join(offenders)


def test_imports_point_down() -> None:
    offenders = []
    for path in _source_files():
        here = _floor(_module_name(path))
        assert here is not None, path
        for line, module in _imports(path):
            there = _floor(module)
            if there is not None and there > here and FLOORS[here][0] != "shell":
                offenders.append(
                    f"{path.relative_to(ROOT)}:{line}: {FLOORS[here][0]} imports "
                    f"{module} ({FLOORS[there][0]})"
                )
    assert not offenders, "imports must point down:\n" + "\n".join(offenders)


def test_the_package_root_imports_nothing() -> None:
    """Importing deepfake_stream.producers.client runs deepfake_stream/__init__.py first: it
    must stay free of imports, or the light client would load the server."""
    assert _imports(ROOT / "deepfake_stream" / "__init__.py") == []


@pytest.mark.parametrize(
    ("module", "floor"),
    [
        ("deepfake_stream.core.stage", "core"),
        ("deepfake_stream.models.base", "models"),
        ("deepfake_stream.store.writer", "store"),
        ("deepfake_stream.cli", "shell"),
        ("deepfake_stream.shim.app", "shell"),
        ("aiokafka", None),
    ],
)
def test_the_checker_places_modules_on_their_floor(module: str, floor: str | None) -> None:
    """What makes the check above able to fail: each module lands on its own floor."""
    index = _floor(module)
    assert (None if index is None else FLOORS[index][0]) == floor
