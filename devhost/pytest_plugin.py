"""pytest fixtures for testing the app through the real worker, in-process or over HTTP.

Register from tests/conftest.py with `pytest_plugins = ["devhost.pytest_plugin"]`. Tests stay
plain sync functions: the host runs the worker on its own event loop thread.

    def test_voice(worker_host, monkeypatch):
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "t")
        hook = simulate.build("voice", "http://localhost:7071/api/voice_url", "t")
        resp = worker_host.request("POST", hook.url, headers=hook.headers, body=hook.body)
        assert resp.status == 200
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost.server import ServedHost, serve
from devhost.worker_host import WorkerHost

APP_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = APP_ROOT.parent / "shared"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def require_shared(path: Path = SHARED_DIR) -> Path:
    """`path` (../shared or a file in it) if present; else skip, or fail when CI=true (CI must
    not skip)."""
    if path.exists():
        return path
    reason = f"reference data {path} is absent (../shared beside the checkout; see its README)"
    if in_ci():
        pytest.fail(f"{reason}, and CI=true: tests needing it must run in CI", pytrace=False)
    pytest.skip(reason)


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
