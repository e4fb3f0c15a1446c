"""What every phase shares: where the apps are, the fake settings, signed webhooks, the env, a
run's header and its call or message flow (`python -m bench` and `python -m bench.compare`).

Settings are fixed fakes so a run never depends on (or leaks) a developer's real credentials:
every Twilio setting the app reads is removed from the children's environment first, then set
to these values. PUBLIC_BASE_URL is set, as on Azure, so the signature is checked over the
public URL while the request arrives at the local host, which is the production path.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.app_settings import ALL_SETTINGS, STORAGE_SETTINGS
from shared.common.settings import PLATFORM_SETTINGS

APP_ROOT = Path(__file__).resolve().parent.parent
FLOOR_ROOT = Path(__file__).resolve().parent / "floor_app"
HOST_BASE_URL = "http://localhost:7071"
PUBLIC_BASE_URL = "https://bench-app.azurewebsites.net"

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token-not-a-secret-00"  # noqa: S105 - a fixed fake, never a real token
PHONE_NUMBER = "+14155550160"  # not a number the example flows ring or text
CALL_TO = "+14155550123"
FUNCTION_KEY = "bench-function-key-not-a-secret"

# Every setting the app reads: none of the developer's own values may leak in.
APP_SETTING_NAMES = (*ALL_SETTINGS, *PLATFORM_SETTINGS, *STORAGE_SETTINGS)

APP_SETTINGS = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "TWILIO_PHONE_NUMBER": PHONE_NUMBER,
    "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
    "TWILIO_HTTP_TIMEOUT": "10",
    # As infra/app/functionapp.bicep sets it on Azure (where zoneinfo finds a call flow's zones).
    "PYTHONTZPATH": "/usr/share/zoneinfo:/usr/lib/zoneinfo:/usr/share/lib/zoneinfo:/etc/zoneinfo",
}
# A run with telemetry on (docs/telemetry.md, BENCHMARKS.md): this variable, when set, becomes
# the app's APPLICATIONINSIGHTS_CONNECTION_STRING (point it at nothing reachable: no run sends).
_TELEMETRY = os.environ.get("BENCH_APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
if _TELEMETRY:
    APP_SETTINGS["APPLICATIONINSIGHTS_CONNECTION_STRING"] = _TELEMETRY


def app_environ(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """`base` (default os.environ) with the app's settings replaced by the benchmark's fakes.

    Children run with cwd=APP_ROOT and `python -m`, which puts the repo first on sys.path, so
    no PYTHONPATH is added (it would lengthen every import's search on both sides).
    """
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in APP_SETTING_NAMES}
    env |= APP_SETTINGS
    env |= extra
    return env


def apply_app_settings() -> None:
    """Put the fakes into this process's environment (the in-process hosts read os.environ)."""
    for name in APP_SETTING_NAMES:
        os.environ.pop(name, None)
    os.environ.update(APP_SETTINGS)


@dataclass(frozen=True)
class SignedRequest:
    """A request ready for WorkerHost.request or the wire: a signed Twilio webhook."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def to(self, path: str) -> SignedRequest:
        """The same request sent to another route (the floor gets the webhook's exact bytes)."""
        return SignedRequest(self.method, path, dict(self.headers), self.body)


def signed_webhook(kind: str) -> SignedRequest:
    """A realistic Twilio webhook ("voice" or "sms"), signed over the public URL.

    devhost.simulate builds the form Twilio sends and signs it with twilio's RequestValidator,
    exactly as Twilio signs it; each call gets fresh SIDs, like distinct calls and messages.
    """
    from devhost import simulate

    path = f"/api/{simulate.KINDS[kind]}"
    hook = simulate.build(
        kind,
        HOST_BASE_URL + path,
        AUTH_TOKEN,
        account_sid=ACCOUNT_SID,
        to=PHONE_NUMBER,
        from_=CALL_TO,
        sign_url=PUBLIC_BASE_URL + path,
    )
    return SignedRequest("POST", path, dict(hook.headers), hook.body)


def installed_azurite() -> Path:
    """The Azurite binary the storage phases run (cold, warm, broadcast), or a clean exit that
    says how to get it (rather than pytest's Skipped, raised outside pytest)."""
    from devhost.pytest_plugin import azurite_binary

    binary = azurite_binary()
    if not binary.is_file():
        raise SystemExit(f"Azurite is not installed ({binary} not found): scripts/bench.sh "
                         "installs it (npm ci), as scripts/test.sh does")
    return binary


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def header(argv: Sequence[str], prog: str = "python -m bench") -> str:
    """The lines a run's output starts with: the command, the date, the machine."""
    command = " ".join(shlex.quote(a) for a in [prog, *argv])
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return "\n".join([
        "Benchmark: Twilio webhooks and make_call on the Azure Functions Python worker (devhost)",
        f"date: {now}",
        f"command: {command}",
        f"machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} "
        f"{platform.release()}, load average {load:.2f} at start",
        f"python: {platform.python_version()} ({sys.executable})",
    ])


@contextlib.contextmanager
def flow_for_the_run(setting: str, flow: str, kind: list[str], stamped: bool,
                     root: Path = APP_ROOT) -> Iterator[None]:
    """CALL_FLOW or MESSAGE_FLOW for the run, stamped as the deploy stamps it (with the
    benchmark's settings, by the check of the checkout at `root`); a stamp this run made is
    removed afterwards, and one that was there is put back."""
    APP_SETTINGS[setting] = flow
    stamp_file = root / (flow + ".checked")
    kept = stamp_file.read_bytes() if stamp_file.exists() else None
    stamp_file.unlink(missing_ok=True)
    try:
        if stamped:
            subprocess.run(  # noqa: S603 - our own script, run with our interpreter
                [sys.executable, "scripts/check_flow.py", *kind, "--stamp", flow],
                cwd=root, env=app_environ(), check=True,
                stdout=subprocess.DEVNULL)
        print(f"{setting}: {flow} ({'stamped' if stamped else 'no stamp'})", flush=True)
        yield
    finally:
        stamp_file.unlink(missing_ok=True)
        if kept is not None:
            stamp_file.write_bytes(kept)


@contextlib.contextmanager
def storage_for_the_run() -> Iterator[None]:
    """An in-memory Azurite, as the children's AzureWebJobsStorage: sms_url keeps every text it
    answers (a storage write on its path), as it does on Azure."""
    from devhost.pytest_plugin import Azurite

    binary = installed_azurite()
    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as workdir:
        azurite = Azurite(binary, Path(workdir)).start()
        APP_SETTINGS["AzureWebJobsStorage"] = azurite.connection_string
        print("storage: Azurite, in memory (sms_url records each text)", flush=True)
        try:
            yield
        finally:
            APP_SETTINGS.pop("AzureWebJobsStorage", None)
            azurite.stop()
