"""scripts/start.sh's arguments reach the local host, whose refusals are one line, not a trace.

The script runs in a temporary copy of the repository's scripts whose venv.sh is a stand-in
(nothing installed) and whose .venv/bin/python is this Python, with the repository on
PYTHONPATH and no `func` on the PATH, so the local host (python -m devhost.server) serves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devhost import server

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

STUB_VENV_SH = 'VENV=".venv"\nPYTHON=python3\nensure_venv() { :; }\n'


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    (tmp_path / "scripts" / "lib").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "start.sh", tmp_path / "scripts" / "start.sh")
    shutil.copy(REPO / "scripts" / "build_console.py", tmp_path / "scripts" / "build_console.py")
    shutil.copy(REPO / "scripts" / "lib" / "azurite.sh", tmp_path / "scripts" / "lib")
    (tmp_path / "scripts" / "lib" / "venv.sh").write_text(STUB_VENV_SH)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    tools = tmp_path / "tools"  # what the script runs, and no func
    tools.mkdir()
    for tool in ("bash", "dirname", "tr", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (tools / tool).symlink_to(found)
    return tmp_path


def start_sh(sandbox: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}
    env |= {"PATH": str(sandbox / "tools"), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        ["bash", str(sandbox / "scripts" / "start.sh"), *args], cwd=sandbox, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_an_out_of_range_port_is_one_line_and_a_non_zero_exit(sandbox: Path, port: str) -> None:
    result = start_sh(sandbox, "--port", port)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"error: port {port} is not a TCP port (0 to 65535): check --port"]
    assert result.stdout.splitlines()[0].startswith("Azure Functions Core Tools (func) not found")


def test_an_out_of_range_local_http_port_is_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "local.settings.json").write_text(json.dumps(
        {"IsEncrypted": False, "Values": {}, "Host": {"LocalHttpPort": 70000}}))
    assert server.main(["--app-root", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "error: port 70000 is not a TCP port (0 to 65535): check Host.LocalHttpPort in "
        "local.settings.json\n")


def test_a_local_http_port_that_is_not_a_number_is_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "local.settings.json").write_text(json.dumps(
        {"IsEncrypted": False, "Values": {}, "Host": {"LocalHttpPort": "seventy"}}))
    assert server.main(["--app-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Host.LocalHttpPort must be a port number" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("option", [["--host-key", "k1"], ["--host-key=k1"],
                                    ["--twilio-api", "http://127.0.0.1:1"]])
def test_a_local_host_option_serves_with_the_local_host_even_with_core_tools(
        sandbox: Path, option: list[str]) -> None:
    """The README's tunnel step runs `scripts/start.sh --host-key KEY`: with Core Tools
    installed it ran `func start`, which has no such option and enforces no keys locally."""
    func = sandbox / "tools" / "func"
    func.write_text("#!/bin/sh\necho func ran\n")
    func.chmod(0o755)

    result = start_sh(sandbox, *option, "--port", "99999")

    assert result.stdout.splitlines()[0] == (
        f"{option[0].split('=')[0]} is an option of the local worker host: serving with "
        "python -m devhost.server (not func start).")
    assert "func ran" not in result.stdout
    assert result.stderr.splitlines() == [  # the local host's own refusal of the port
        "error: port 99999 is not a TCP port (0 to 65535): check --port"]
