"""pytest fixtures for testing the app through the real worker, in-process or over HTTP.

Register from tests/conftest.py with `pytest_plugins = ["devhost.pytest_plugin"]`. Tests stay
plain sync functions: the host runs the worker on its own event loop thread.

    def test_voice(worker_host, monkeypatch):
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "t")
        hook = simulate.build("voice", "http://localhost:7071/api/voice_url", "t")
        resp = worker_host.request("POST", hook.url, headers=hook.headers, body=hook.body)
        assert resp.status == 200

Storage is Azurite, the real emulator (npm, pinned in package-lock.json), one per session:

    def test_records(azurite, table_name):
        service = TableServiceClient.from_connection_string(azurite.connection_string)
        service.create_table(table_name)
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NoReturn

import pytest

from devhost.server import ServedHost, serve
from devhost.worker_host import WorkerHost
from shared.records.settings import DEVELOPMENT_ACCOUNT, DEVELOPMENT_KEY

APP_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = APP_ROOT.parent / "shared"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def skip_unless_ci(reason: str, what: str = "tests needing it") -> NoReturn:
    """Skip with `reason`; but fail when CI=true, where nothing may be skipped for want of it."""
    __tracebackhide__ = True
    if in_ci():
        pytest.fail(f"{reason}, and CI=true: {what} must run in CI", pytrace=False)
    pytest.skip(reason)


def require_shared(path: Path = SHARED_DIR) -> Path:
    """`path` (../shared or a file in it) if present; else skip, or fail when CI=true (CI must
    not skip)."""
    if path.exists():
        return path
    skip_unless_ci(
        f"reference data {path} is absent (../shared beside the checkout: README.md, Tests and "
        "benchmark)"
    )


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared reference folder; skips (fails when CI=true) when it is absent."""
    return require_shared()


@pytest.fixture(scope="session")
def app_root() -> Path:
    """The repository root, which is the function app's root."""
    return APP_ROOT


@pytest.fixture(scope="session")
def worker_host(app_root: Path) -> Iterator[WorkerHost]:
    """The real app, every function loaded through the worker once per session; no keys.

    Functions read os.environ per request, so `monkeypatch.setenv` in a test applies.
    """
    __tracebackhide__ = True
    host = WorkerHost.start(app_root)
    yield host
    host.close()


@pytest.fixture
def start_worker_host(app_root: Path) -> Iterator[Callable[..., WorkerHost]]:
    """Factory: `start_worker_host(root=None, **WorkerHost.start kwargs)`; closed after the test.

    For keys (`function_keys=`, `host_keys=`, `master_key=`) or a fixture app (`root=`).
    """
    hosts: list[WorkerHost] = []

    def start(root: Path | str | None = None, **kwargs: Any) -> WorkerHost:
        __tracebackhide__ = True
        host = WorkerHost.start(root or app_root, **kwargs)
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.close()


@pytest.fixture(scope="session")
def served_host(worker_host: WorkerHost) -> Iterator[ServedHost]:
    """The real app served over HTTP on 127.0.0.1 and a free port; `served_host.url` is its base.

    It does not read local.settings.json: tests set the environment themselves.
    """
    served = serve(worker_host, port=0, owns_host=False)
    yield served
    served.close()


@pytest.fixture
def start_served_host(app_root: Path) -> Iterator[Callable[..., ServedHost]]:
    """Factory: `start_served_host(root=None, **WorkerHost.start kwargs)` on a free port."""
    served_hosts: list[ServedHost] = []

    def start(root: Path | str | None = None, **kwargs: Any) -> ServedHost:
        served = serve(WorkerHost.start(root or app_root, **kwargs), port=0)
        served_hosts.append(served)
        return served

    yield start
    for served in served_hosts:
        served.close()


# ---- Azurite: the storage emulator, a real Blob/Queue/Table server -----------------------------

# Azurite's one account and its key: fixed, published by Microsoft (no secret), the same for
# every Azurite; the app's settings hold the one copy (UseDevelopmentStorage=true means them).
AZURITE_ACCOUNT = DEVELOPMENT_ACCOUNT
AZURITE_ACCOUNT_KEY = DEVELOPMENT_KEY
AZURITE_NOT_INSTALLED = "Azurite is not installed: scripts/test.sh installs it (npm ci)"
AZURITE_START_TIMEOUT = 20.0
AZURITE_STOP_TIMEOUT = 10.0


def azurite_binary(environ: Mapping[str, str] | None = None) -> Path:
    """$AZURITE_BIN (scripts/test.sh exports it), else node_modules/.bin/azurite of the app."""
    env = os.environ if environ is None else environ
    configured = env.get("AZURITE_BIN", "").strip()
    return Path(configured) if configured else APP_ROOT / "node_modules" / ".bin" / "azurite"


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports nothing listens on now (the OS's picks, held together so none
    repeats; free until someone else takes them)."""
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class AzuriteError(RuntimeError):
    """Azurite exited, or did not answer in time; the message ends with its output."""


class Azurite:
    """One Azurite process: in-memory, on 127.0.0.1 and three fixed ports, account
    devstoreaccount1.

    `stop()` ends it (the ports then refuse connections) and `start()` brings it back on the
    same ports, so a test can take storage away mid-test. Data is in memory only: a stop loses
    every table, entity, queue and blob.
    """

    host = "127.0.0.1"
    account = AZURITE_ACCOUNT
    account_key = AZURITE_ACCOUNT_KEY

    def __init__(
        self,
        binary: Path | str,
        workdir: Path | str,
        *,
        blob_port: int | None = None,
        queue_port: int | None = None,
        table_port: int | None = None,
    ) -> None:
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        free = iter(free_ports(3, self.host))
        self.blob_port = blob_port or next(free)
        self.queue_port = queue_port or next(free)
        self.table_port = table_port or next(free)
        self.log_path = self.workdir / "azurite.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def ports(self) -> tuple[int, int, int]:
        """(blob, queue, table)."""
        return (self.blob_port, self.queue_port, self.table_port)

    def endpoint(self, service: str) -> str:
        """`service` "blob", "queue" or "table": its URL, account path included."""
        port = {"blob": self.blob_port, "queue": self.queue_port, "table": self.table_port}
        return f"http://{self.host}:{port[service]}/{self.account}"

    @property
    def table_endpoint(self) -> str:
        return self.endpoint("table")

    @property
    def queue_endpoint(self) -> str:
        return self.endpoint("queue")

    @property
    def blob_endpoint(self) -> str:
        return self.endpoint("blob")

    @property
    def connection_string(self) -> str:
        """Azurite's standard development connection string, for these ports."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={self.account_key};"
            f"BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        return [
            # --disableTelemetry: Azurite otherwise reports usage to Application Insights.
            str(self.binary), "--inMemoryPersistence", "--silent", "--skipApiVersionCheck",
            "--loose", "--disableTelemetry",
            "--blobHost", self.host, "--blobPort", str(self.blob_port),
            "--queueHost", self.host, "--queuePort", str(self.queue_port),
            "--tableHost", self.host, "--tablePort", str(self.table_port),
        ]

    def start(self, timeout: float = AZURITE_START_TIMEOUT) -> Azurite:
        """Starts it (no-op when running) and waits until all three ports accept connections;
        raises AzuriteError when it exits first or `timeout` seconds pass."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own pinned binary
            self.command(), cwd=self.workdir, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not all(port_answers(self.host, port, 0.2) for port in self.ports):
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise AzuriteError(f"Azurite exited ({code}) before answering:\n{self.output()}")
            if time.monotonic() >= deadline:
                self.stop()
                raise AzuriteError(
                    f"Azurite did not answer on {self.host}:{self.ports} within {timeout:g} s:"
                    f"\n{self.output()}"
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = AZURITE_STOP_TIMEOUT) -> None:
        """Ends it (SIGTERM, then SIGKILL after `timeout` s); its data is gone. Safe to repeat."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def output(self) -> str:
        """What Azurite printed since it last started (start-up lines; --silent drops access
        logs)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def table_name(self, hint: str = "") -> str:
        """A fresh table name (`unique_table_name`)."""
        return unique_table_name(hint)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Azurite {state} on {self.host} blob={self.blob_port} " \
            f"queue={self.queue_port} table={self.table_port}>"


def unique_table_name(hint: str = "") -> str:
    """A table name no other call returned: "t", `hint`'s letters and digits (at most 40), 16
    hex digits; so letters and digits, starting with a letter, 3 to 63 long (Azure's rule)."""
    stem = re.sub(r"[^A-Za-z0-9]", "", hint)[:40]
    return f"t{stem}{uuid.uuid4().hex[:16]}"


def require_azurite(environ: Mapping[str, str] | None = None) -> Path:
    """The Azurite binary; skips (fails when CI=true) when it is not installed."""
    binary = azurite_binary(environ)
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    skip_unless_ci(f"{AZURITE_NOT_INSTALLED} ({binary} not found)", "tests needing storage")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite for the session: in-memory, on free 127.0.0.1 ports, started before the first
    test that asks and ended after the last. Skips when it is not installed (fails when CI=true).

    Tests share it: use a fresh name per test (`table_name`). A test that calls `stop()` should
    `start()` it again before it ends (same ports; storage is empty again); `azurite_storage`
    restarts one left stopped.
    """
    __tracebackhide__ = True
    binary = require_azurite()
    server = Azurite(binary, tmp_path_factory.mktemp("azurite"))
    failure = None
    try:
        server.start()
    except AzuriteError as error:
        failure = str(error)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def table_name(request: pytest.FixtureRequest) -> str:
    """A table name unique to this test (letters and digits, from the test's name)."""
    return unique_table_name(request.node.name)


@pytest.fixture
def azurite_storage(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Azurite:
    """`azurite` (started again if an earlier test left it stopped), with AzureWebJobsStorage
    set to its connection string for this test, where the app reads it."""
    monkeypatch.setenv("AzureWebJobsStorage", azurite.start().connection_string)
    return azurite
