"""scripts/bench.sh: bench/results/latest.txt holds the last real run, not `--help`'s text.

The script runs in a temporary copy of the repository whose venv.sh and .venv/bin/python are
stand-ins: nothing is installed, the benchmark does not run, the real .venv is not touched.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH_SH = REPO / "scripts" / "bench.sh"
PREVIOUS = "results of the last real run\n"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

# venv.sh without the venv: ensure_venv is a no-op, VENV the sandbox's .venv.
STUB_VENV_SH = 'VENV=".venv"\nensure_venv() { :; }\n'
# azurite.sh without Azurite: ensure_azurite is a no-op.
STUB_AZURITE_SH = 'AZURITE_BIN="node_modules/.bin/azurite"\nensure_azurite() { :; }\n'
# `python`: pip does nothing; `-m bench` answers like bench's argparse (which takes an
# abbreviated --help), or "runs".
STUB_PYTHON = """#!/usr/bin/env bash
[ "$1 $2" = "-m pip" ] && exit 0
[ "$1 $2" = "-m bench" ] || exit 99
shift 2
for arg in "$@"; do
  case "$arg" in
    -h | --h | --he | --hel | --help) echo "usage: python -m bench [-h] [--strict]"; exit 0 ;;
    --bogus) echo "python -m bench: error: unrecognized arguments: --bogus" >&2; exit 2 ;;
  esac
done
echo "Benchmark: all targets met"
[ "${1:-}" = --strict ] && exit 1
exit 0
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    (tmp_path / "scripts" / "lib").mkdir(parents=True)
    shutil.copy(BENCH_SH, tmp_path / "scripts" / "bench.sh")
    (tmp_path / "scripts" / "lib" / "venv.sh").write_text(STUB_VENV_SH)
    (tmp_path / "scripts" / "lib" / "azurite.sh").write_text(STUB_AZURITE_SH)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB_PYTHON)
    python.chmod(0o755)
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "latest.txt").write_text(PREVIOUS)
    return tmp_path


def bench_sh(sandbox: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(sandbox / "scripts" / "bench.sh"), *args],
        capture_output=True, text=True, timeout=30, check=False,
    )


def latest(sandbox: Path) -> str:
    return (sandbox / "bench" / "results" / "latest.txt").read_text()


@pytest.mark.parametrize("flag", ["--help", "-h", "--he"])
def test_help_prints_the_options_and_keeps_the_last_results(sandbox: Path, flag: str) -> None:
    result = bench_sh(sandbox, flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m bench")
    assert latest(sandbox) == PREVIOUS
    assert sorted(p.name for p in (sandbox / "bench" / "results").iterdir()) == ["latest.txt"]


def test_a_run_is_printed_and_written_to_latest(sandbox: Path) -> None:
    result = bench_sh(sandbox)
    assert result.returncode == 0, result.stderr
    assert result.stdout == latest(sandbox) == "Benchmark: all targets met\n"
    assert sorted(p.name for p in (sandbox / "bench" / "results").iterdir()) == ["latest.txt"]


def test_a_strict_run_that_misses_a_target_still_records_it(sandbox: Path) -> None:
    result = bench_sh(sandbox, "--strict")
    assert result.returncode == 1
    assert latest(sandbox) == "Benchmark: all targets met\n"


def test_a_usage_error_keeps_the_last_results_and_its_exit_code(sandbox: Path) -> None:
    result = bench_sh(sandbox, "--bogus")
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr
    assert latest(sandbox) == PREVIOUS


def test_without_azurite_it_stops_before_running_and_keeps_the_last_results(
    sandbox: Path,
) -> None:
    """The storage phases need Azurite: bench.sh installs it as test.sh does, and when that
    cannot be done it says so (ensure_azurite's line) and runs nothing."""
    (sandbox / "scripts" / "lib" / "azurite.sh").write_text(
        'ensure_azurite() { echo "Azurite needs Node.js $1" >&2; return 1; }\n')

    result = bench_sh(sandbox)

    assert result.returncode == 1
    assert "Azurite needs Node.js" in result.stderr and result.stdout == ""
    assert latest(sandbox) == PREVIOUS
