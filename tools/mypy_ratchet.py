"""Type-check the installed package with mypy, strictly where it is strict and by ratchet
elsewhere.

The repository keeps ``consumers/``, ``models/``, ... beside ``deepfake_stream/`` and
setuptools installs them as ``deepfake_stream.consumers``, ... (``package-dir`` in
pyproject.toml). mypy knows no such mapping, and the editable install's import hook is
invisible to it, so this script mirrors the installed layout as a tree of symlinks under
``.mypy_cache/layout/`` and runs ``mypy -p deepfake_stream`` there: every module gets its
installed name, and mypy's messages name the repository's files.

The modules under ``[[tool.mypy.overrides]]`` with the strict flags (core, schemas) must have no
errors. Every other module may have at most as many as ``tests/mypy_baseline.json`` records;
when a module has fewer, the baseline must come down with it (``--update``), so that no
later change can spend the difference. Needs only the standard library and mypy.

    python tools/mypy_ratchet.py            # check (make types)
    python tools/mypy_ratchet.py --update   # write the baseline from the current counts
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "deepfake_stream"
CACHE = ROOT / ".mypy_cache"
LAYOUT = CACHE / "layout"
BASELINE = ROOT / "tests" / "mypy_baseline.json"
# "path/to/file.py:12: error: message  [code]"; notes explain the error above them
MESSAGE = re.compile(r"^(?P<path>[^:\s][^:]*\.pyi?):\d+(?::\d+)?: (?P<kind>error|note): ")


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _package_dirs() -> dict[str, Path]:
    """Installed package name -> repository folder, for the package and its mapped parts."""
    mapping = _pyproject()["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in mapping.items() if name.startswith(PACKAGE)}


def build_layout() -> Path:
    """Mirror the installed layout with symlinks; rebuilt each run, so new files are seen."""
    top = LAYOUT / PACKAGE
    if LAYOUT.exists():
        shutil.rmtree(LAYOUT)  # removes the links, never what they point to
    top.mkdir(parents=True)
    dirs = _package_dirs()
    for child in dirs.pop(PACKAGE).iterdir():
        if child.name != "__pycache__":
            (top / child.name).symlink_to(child)
    for name, folder in sorted(dirs.items()):
        target = LAYOUT.joinpath(*name.split("."))
        if not target.parent.is_dir():  # a part nested below another mapped part
            target.parent.mkdir(parents=True)
        target.symlink_to(folder, target_is_directory=True)
    return LAYOUT


def _repo_path(installed: str) -> str:
    """``deepfake_stream/consumers/x.py`` (as mypy saw it) -> ``consumers/x.py``."""
    parts = Path(installed).parts
    dirs = _package_dirs()
    for depth in range(len(parts) - 1, 0, -1):
        folder = dirs.get(".".join(parts[:depth]))
        if folder is not None:
            return str(folder.relative_to(ROOT).joinpath(*parts[depth:]))
    return installed


def _module(installed: str) -> str:
    parts = list(Path(installed).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _strict_patterns() -> list[str]:
    """Module patterns of the overrides that turn on the strict flags."""
    found: list[str] = []
    for override in _pyproject()["tool"]["mypy"].get("overrides", []):
        if override.get("disallow_untyped_defs"):
            modules = override["module"]
            found += [modules] if isinstance(modules, str) else modules
    return found


def _is_strict(module: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith(".*"):
            base = pattern[:-2]
            if module == base or module.startswith(base + "."):
                return True
        elif module == pattern:
            return True
    return False


def run_mypy() -> tuple[Counter[str], list[str], list[str | None], int]:
    """(errors per module, mypy's output lines with repository paths, the module each line
    is about (None for other lines), mypy's exit status)."""
    layout = build_layout()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(CACHE),
            "--no-pretty",
            "--no-error-summary",
            "-p",
            PACKAGE,
        ],
        cwd=layout,
        capture_output=True,
        text=True,
        check=False,
    )
    counts: Counter[str] = Counter()
    lines: list[str] = []
    modules: list[str | None] = []
    for line in (proc.stdout + proc.stderr).splitlines():
        match = MESSAGE.match(line)
        module = None
        if match:
            installed = match["path"]
            module = _module(installed)
            if match["kind"] == "error":
                counts[module] += 1
            line = _repo_path(installed) + line[len(installed) :]
        lines.append(line)
        modules.append(module)
    return counts, lines, modules, proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite the baseline")
    args = parser.parse_args(argv)

    counts, lines, modules, status = run_mypy()
    if status not in (0, 1) or (status == 1 and not counts):
        print("\n".join(lines), file=sys.stderr)
        print(f"mypy did not run (exit status {status})", file=sys.stderr)
        return 2

    patterns = _strict_patterns()
    strict = {m: n for m, n in counts.items() if _is_strict(m, patterns)}
    ratcheted = {m: n for m, n in sorted(counts.items()) if m not in strict}
    if args.update:
        BASELINE.write_text(json.dumps(ratcheted, indent=0, sort_keys=True) + "\n")
        print(
            f"{BASELINE.relative_to(ROOT)}: {sum(ratcheted.values())} errors in "
            f"{len(ratcheted)} modules"
        )

    baseline: dict[str, int] = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    grew = {m: (baseline.get(m, 0), n) for m, n in ratcheted.items() if n > baseline.get(m, 0)}
    shrank = {m: (b, ratcheted.get(m, 0)) for m, b in baseline.items() if ratcheted.get(m, 0) < b}

    # mypy's messages for the modules at fault only: the baseline's old errors are known
    failing = set(strict) | set(grew)
    for line, module in zip(lines, modules, strict=True):
        if module is not None and module in failing:
            print(line)
    failed = False
    if strict:
        failed = True
        print(f"\nstrict modules have {sum(strict.values())} errors (must be 0):")
        for module, n in sorted(strict.items()):
            print(f"  {module}: {n}")
    if grew:
        failed = True
        print("\nmore mypy errors than tests/mypy_baseline.json allows (fix the new ones):")
        for module, (was, now) in sorted(grew.items()):
            print(f"  {module}: {was} -> {now}")
    if shrank:
        failed = True
        print("\nfewer mypy errors than the baseline records: well done; lock it in with")
        print("  python tools/mypy_ratchet.py --update   (make types-baseline)")
        for module, (was, now) in sorted(shrank.items()):
            print(f"  {module}: {was} -> {now}")
    if not failed:
        print(
            f"mypy: strict part clean; {sum(ratcheted.values())} errors in "
            f"{len(ratcheted)} other modules, as the baseline records"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
