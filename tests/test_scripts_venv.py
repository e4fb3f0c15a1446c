"""scripts/lib/venv.sh: which Python the project's .venv runs on.

`PYTHON=python3.12 scripts/start.sh` with a .venv made by another Python used to run the old one
without a word. These tests source a copy of venv.sh in a temporary folder, with stand-in
Pythons (small bash scripts that log their calls and answer with a fixed version), so they are
fast, install nothing and never touch the repository's own .venv.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_SH = REPO / "scripts" / "lib" / "venv.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

# A stand-in `python`: logs "$0 args" and answers venv.sh's questions as Python VERSION would.
# `-m venv DIR` copies the script itself to DIR/bin/python: the venv runs the same version.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$0 $*" >> "$FAKE_PYTHON_LOG"
case "$1" in
  --version) echo "Python VERSION" ;;
  -c) echo "VERSION" ;;
  -m)
    if [ "$2" = venv ]; then
      dir="${!#}"
      mkdir -p "$dir/bin"
      cp "${BASH_SOURCE[0]}" "$dir/bin/python"
    fi ;;
esac
"""


@dataclass
class Sandbox:
    """A repository copy holding only venv.sh, and a PATH folder of stand-in Pythons."""

    root: Path
    bin: Path
    log: Path

    def python(self, path: Path, version: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(FAKE_PYTHON.replace("VERSION", version))
        path.chmod(0o755)

    def on_path(self, name: str, version: str) -> None:
        self.python(self.bin / name, version)

    def existing_venv(self, version: str) -> None:
        self.python(self.root / ".venv" / "bin" / "python", version)

    def ensure_venv(self, python: str | None) -> subprocess.CompletedProcess[str]:
        """`ensure_venv` as scripts/start.sh runs it (set -euo pipefail), PYTHON as given."""
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE_PYTHON_LOG": str(self.log)}
        if python is not None:
            env["PYTHON"] = python
        return subprocess.run(
            ["bash", "-c", "set -euo pipefail; source scripts/lib/venv.sh; ensure_venv"],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=30, check=False,
        )

    def calls(self) -> list[str]:
        """Each stand-in call, as 'program args', programs relative to the sandbox."""
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [line.replace(f"{self.bin}/", "").replace(f"{self.root}/", "") for line in lines]

    def venv_version(self) -> str:
        venv_python = self.root / ".venv" / "bin" / "python"
        return subprocess.run(
            [str(venv_python), "-c", "version"], env={"FAKE_PYTHON_LOG": "/dev/null"},
            capture_output=True, text=True, check=True,
        ).stdout.strip()


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    root = tmp_path / "repo"
    (root / "scripts" / "lib").mkdir(parents=True)
    shutil.copy(VENV_SH, root / "scripts" / "lib" / "venv.sh")
    (root / "requirements-dev.txt").write_text("pytest\n")
    box = Sandbox(root=root, bin=tmp_path / "bin", log=tmp_path / "calls.log")
    box.bin.mkdir()
    box.on_path("python3", "3.11.7")
    box.on_path("python3.11", "3.11.7")
    box.on_path("python3.12", "3.12.3")
    return box


def pip_installs(calls: list[str]) -> list[str]:
    return [call for call in calls if " -m pip " in f"{call} "]


def test_a_chosen_python_of_another_version_rebuilds_the_venv(sandbox: Sandbox) -> None:
    sandbox.existing_venv("3.11.7")
    result = sandbox.ensure_venv("python3.12")
    assert result.returncode == 0, result.stderr
    [said] = [line for line in result.stdout.splitlines() if "rebuilding" in line]
    assert said == (
        "PYTHON=python3.12 is Python 3.12.3 but .venv has Python 3.11.7: rebuilding .venv with it"
    )
    calls = sandbox.calls()
    assert "python3.12 -m venv --clear .venv" in calls
    assert sandbox.venv_version() == "3.12.3"
    installs = pip_installs(calls)
    assert installs and all(call.startswith(".venv/bin/python -m pip") for call in installs)
    # The rebuild happens before anything is installed into the venv.
    assert calls.index("python3.12 -m venv --clear .venv") < calls.index(installs[0])


def test_a_chosen_python_of_the_same_version_reuses_the_venv(sandbox: Sandbox) -> None:
    sandbox.existing_venv("3.11.7")
    result = sandbox.ensure_venv("python3.11")
    assert result.returncode == 0, result.stderr
    assert "rebuilding" not in result.stdout + result.stderr
    assert not [call for call in sandbox.calls() if "-m venv" in call]
    assert pip_installs(sandbox.calls())


def test_without_python_set_the_existing_venv_is_reused(sandbox: Sandbox) -> None:
    """The default: whatever .venv holds is kept, whichever python3 is on the PATH."""
    sandbox.on_path("python3", "3.12.3")
    sandbox.existing_venv("3.11.7")
    result = sandbox.ensure_venv(None)
    assert result.returncode == 0, result.stderr
    assert "rebuilding" not in result.stdout
    assert not [call for call in sandbox.calls() if call.startswith("python3")]
    assert sandbox.venv_version() == "3.11.7"


def test_a_chosen_python_that_cannot_run_is_named(sandbox: Sandbox) -> None:
    sandbox.existing_venv("3.11.7")
    result = sandbox.ensure_venv("python3.99")
    assert result.returncode != 0
    assert "PYTHON=python3.99 cannot be run" in result.stderr
    assert pip_installs(sandbox.calls()) == []


def test_a_missing_venv_is_created_with_the_chosen_python(sandbox: Sandbox) -> None:
    result = sandbox.ensure_venv("python3.12")
    assert result.returncode == 0, result.stderr
    assert "Creating .venv with Python 3.12.3" in result.stdout
    assert "rebuilding" not in result.stdout
    assert "python3.12 -m venv .venv" in sandbox.calls()
    assert sandbox.venv_version() == "3.12.3"


def said_and_called(sandbox: Sandbox, python: str | None) -> list[str]:
    """ensure_venv's output and the stand-in calls, in the order they happened."""
    env = {"PATH": f"{sandbox.bin}:/usr/bin:/bin", "FAKE_PYTHON_LOG": str(sandbox.log)}
    if python is not None:
        env["PYTHON"] = python
    subprocess.run(
        ["bash", "-c", 'set -euo pipefail; source scripts/lib/venv.sh; ensure_venv >>"$0"',
         str(sandbox.log)],
        cwd=sandbox.root, env=env, capture_output=True, text=True, timeout=30, check=True,
    )
    return sandbox.calls()


def test_a_cold_venv_says_it_is_installing_before_pip_runs(sandbox: Sandbox) -> None:
    """A cold scripts/start.sh was silent for half a minute while pip -q installed."""
    lines = said_and_called(sandbox, None)
    installing = [i for i, line in enumerate(lines) if line.startswith("Installing ")]
    assert installing, lines
    assert "Azure Functions Python worker into .venv" in lines[installing[0]]
    first_pip = next(i for i, line in enumerate(lines) if " -m pip " in f"{line} ")
    assert installing[0] < first_pip


def test_a_warm_venv_says_it_is_checking(sandbox: Sandbox) -> None:
    sandbox.existing_venv("3.11.7")
    lines = said_and_called(sandbox, None)
    checking = [i for i, line in enumerate(lines) if line.startswith("Checking .venv")]
    assert checking and not [line for line in lines if line.startswith("Installing ")]
    assert checking[0] < next(i for i, line in enumerate(lines) if " -m pip " in f"{line} ")
