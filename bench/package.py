"""The deployment package's size: what a Flex Consumption cold start has to pull and unpack.

It is measured as Azure builds it: `pip install --target` of requirements.txt into an empty
folder (a remote build installs the same packages), plus the app's own files that .funcignore
does not exclude. Each top-level package's share is printed, largest first, so a dependency
that grows shows up by name.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bench.common import APP_ROOT
from bench.stats import Report

TARGET_MB = 80.0
MB = 1_000_000


def funcignore_patterns(root: Path = APP_ROOT) -> list[str]:
    lines = (root / ".funcignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(relative: str, is_dir: bool, patterns: Iterable[str]) -> bool:
    """The subset of .gitignore syntax .funcignore uses here: `name`, `name/` (folders only) and
    globs, each matched against every path component, as git does for a pattern without a
    slash inside. No library for this is in the app's or the benchmark's requirements, and the
    file is ours: a test holds this reading to the files it must keep and drop."""
    parts = relative.split("/")
    for pattern in patterns:
        folder_only = pattern.endswith("/")
        glob = pattern.rstrip("/")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if folder_only and last and not is_dir:
                continue
            if fnmatch.fnmatchcase(part, glob):
                return True
    return False


def app_files(root: Path = APP_ROOT) -> list[Path]:
    """The app's own files that go into the package: what .funcignore keeps, folders pruned
    as a whole."""
    patterns = funcignore_patterns(root)
    kept: list[Path] = []
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        relative = base.relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        dirs[:] = sorted(d for d in dirs if not _ignored(prefix + d, True, patterns))
        kept += [base / f for f in sorted(files) if not _ignored(prefix + f, False, patterns)]
    return kept


def _size(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def install(target: Path) -> None:
    subprocess.run(  # noqa: S603 - our own interpreter and requirements file
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install",
         "--target", str(target), "-r", str(APP_ROOT / "requirements.txt")],
        check=True,
    )


def run(report: Report) -> float:
    """Print the package's size by part and check it against the target; returns MB."""
    print("\n== Deployment package (pip install --target of requirements.txt + app files) ==",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-package-") as folder:
        target = Path(folder)
        install(target)
        parts: dict[str, int] = {}
        for child in target.iterdir():
            name = child.name.split("-")[0] if child.name.endswith(".dist-info") else child.name
            files = child.rglob("*") if child.is_dir() else [child]
            parts[name] = parts.get(name, 0) + _size(files)
    own = app_files()
    parts["(the app's own files)"] = _size(own)
    total = sum(parts.values())
    for name, size in sorted(parts.items(), key=lambda item: -item[1])[:12]:
        print(f"  {name:<40} {size / MB:>7.1f} MB")
    print(f"  {'total':<40} {total / MB:>7.1f} MB  ({len(own)} app files)")
    report.check("deployment package size", total / MB, TARGET_MB, unit="MB")
    return total / MB
