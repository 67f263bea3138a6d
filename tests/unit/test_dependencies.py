"""Every third-party module the package imports is declared in pyproject.toml, and the client
(the base install: ``deepfake_stream.producers.client``, ``deepfake_stream.schemas``) imports
only the base dependencies.

A module that is imported but only arrives as someone else's dependency (starlette through
fastapi, opentelemetry-api through opentelemetry-sdk) works until that someone drops it.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Mapping
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]

# Imported, yet no distribution of ours to declare: top-level module -> why. None so far;
# an entry needs its reason.
EXCEPTIONS: dict[str, str] = {}

CLIENT_ROOTS = ("deepfake_stream.producers.client", "deepfake_stream.schemas")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return _normalise(match[0])


BASE = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
DECLARED = BASE | {
    _requirement_name(r)
    for extra in PYPROJECT["project"]["optional-dependencies"].values()
    for r in extra
}


def _source_files() -> dict[str, Path]:
    """Installed module name -> file, for every module of the package."""
    files = {}
    for name, folder in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            module = ".".join([name, *parts])
            if name == "deepfake_stream" and len(parts) and f"{name}.{parts[0]}" in PACKAGE_DIRS:
                continue  # not a thing: mapped parts live in their own folders
            files[module] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path, *, top_level_only: bool) -> set[str]:
    """Absolute names ``module`` imports; with ``top_level_only``, those that run when it is
    imported (not inside functions, not under ``if TYPE_CHECKING``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if top_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return
        if top_level_only and isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base)
                name = f"{prefix}.{node.module}" if node.module else prefix
            else:
                name = node.module or ""
            found.add(name)
            if name.split(".")[0] == "deepfake_stream":
                # `from pkg import submodule` imports the submodule too
                found.update(f"{name}.{alias.name}" for alias in node.names)
        for inner in ast.iter_child_nodes(node):
            visit(inner)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def _third_party(name: str) -> str | None:
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top == "deepfake_stream" or top == "__future__":
        return None
    return top


@cache
def _files_of(dist: str) -> frozenset[str]:
    try:
        return frozenset(str(f) for f in distribution(dist).files or ())
    except PackageNotFoundError:
        return frozenset()


@cache
def _top_level_distributions() -> Mapping[str, list[str]]:
    return packages_distributions()


@cache
def _distributions_of(name: str) -> frozenset[str]:
    """The installed distributions that provide module ``name`` (normalised names). A
    namespace package (``opentelemetry``) is split over several: the one whose files hold the
    module itself is the one we depend on."""
    top = name.split(".")[0]
    candidates = set(_top_level_distributions().get(top, ()))
    if len(candidates) <= 1:
        return frozenset(_normalise(d) for d in candidates)
    for depth in range(len(name.split(".")), 1, -1):
        stem = "/".join(name.split(".")[:depth])
        owners = {
            d
            for d in candidates
            if any(f == f"{stem}.py" or f.startswith(f"{stem}/") for f in _files_of(d))
        }
        if owners:
            return frozenset(_normalise(d) for d in owners)
    return frozenset(_normalise(d) for d in candidates)


def _all_imports() -> dict[str, set[str]]:
    """Third-party module -> the package's modules that import it (anywhere in them)."""
    found: dict[str, set[str]] = {}
    for module, path in _source_files().items():
        for name in _imports(module, path, top_level_only=False):
            if _third_party(name):
                found.setdefault(name, set()).add(module)
    return found


def test_every_third_party_import_is_a_declared_distribution() -> None:
    missing = []
    for name, importers in sorted(_all_imports().items()):
        top = name.split(".")[0]
        if top in EXCEPTIONS:
            continue
        dists = _distributions_of(name)
        if not dists:
            missing.append(f"{name}: not installed (imported by {sorted(importers)[0]})")
        elif not dists & DECLARED:
            missing.append(
                f"{name}: from {sorted(dists)}, none declared in pyproject.toml "
                f"(imported by {', '.join(sorted(importers)[:3])})"
            )
    assert not missing, "\n".join(missing)


def test_the_client_imports_only_the_base_dependencies() -> None:
    files = _source_files()
    seen: set[str] = set()
    todo = [m for m in files if any(m == r or m.startswith(r + ".") for r in CLIENT_ROOTS)]
    outside = []
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        # importing a.b.c runs a/__init__ and a/b/__init__ first
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        todo += [p for p in parents if p in files]
        for name in _imports(module, files[module], top_level_only=True):
            if name in files:
                todo.append(name)
            elif _third_party(name) and not _distributions_of(name) & BASE:
                outside.append(f"{module} imports {name} ({sorted(_distributions_of(name))})")
    assert not outside, "\n".join(sorted(outside))
    assert {"deepfake_stream.core.settings", "deepfake_stream.core.tracing"} <= seen  # walked


def test_the_check_sees_every_part_of_the_package() -> None:
    modules = _source_files()
    for part in PACKAGE_DIRS:
        assert part in modules
    assert "deepfake_stream.consumers.isolate" in modules
    assert "aiokafka" in _all_imports()
