"""local.settings.json, read as `func start` reads it.

`func start` puts the file's `Values` into the worker's environment, but a variable already set
in the shell wins, so a one-off `TWILIO_AUTH_TOKEN=... func start` works. The served host and the
simulator do the same here. Values are never printed: several are secrets.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.appconfig import AppConfigError, read_json

FILE_NAME = "local.settings.json"
EXAMPLE_NAME = "local.settings.json.example"
DEFAULT_PORT = 7071


@dataclass(frozen=True)
class LocalSettings:
    """The parts of local.settings.json the local host uses."""

    path: Path
    values: dict[str, str] = field(default_factory=dict)
    port: int | None = None


def read(app_root: Path | str) -> LocalSettings | None:
    """The app's local.settings.json, or None when it does not exist."""
    path = Path(app_root) / FILE_NAME
    if not path.is_file():
        return None
    data: Any = read_json(path)
    if not isinstance(data, dict):
        raise AppConfigError(f"{path}: expected a JSON object")
    if data.get("IsEncrypted"):
        raise AppConfigError(
            f"{path}: IsEncrypted is true; decrypt it with `func settings decrypt` on the machine "
            "that encrypted it, or set IsEncrypted to false with plain values"
        )
    values = data.get("Values") or {}
    if not isinstance(values, dict):
        raise AppConfigError(f"{path}: Values must be an object of strings")
    port = (data.get("Host") or {}).get("LocalHttpPort")
    try:
        port = int(port) if port else None
    except (TypeError, ValueError):
        raise AppConfigError(f"{path}: Host.LocalHttpPort must be a port number") from None
    return LocalSettings(
        path=path,
        values={str(k): "" if v is None else str(v) for k, v in values.items()},
        port=port,
    )


def http_port(found: LocalSettings | None) -> int:
    """The port the local host listens on without `--port`: Host.LocalHttpPort, else 7071.

    `func start` picks it this way and so does devhost.server; the simulator asks here too, so
    it reaches the host scripts/start.sh started from the same local.settings.json.
    """
    if found is not None and found.port:
        return found.port
    return DEFAULT_PORT


def apply(
    settings: LocalSettings, environ: MutableMapping[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """Copy Values into the environment without overriding; returns (applied, kept) names.
    A name the environment already holds with the file's value counts as applied: only one the
    environment shadows with another value is kept (start.sh exports FUNCTIONS_WORKER_RUNTIME
    itself, and was reported as shadowing the file's)."""
    env = os.environ if environ is None else environ
    applied, kept = [], []
    for name, value in settings.values.items():
        if name in env and env[name] != value:
            kept.append(name)
        elif name in env:
            applied.append(name)
        else:
            env[name] = value
            applied.append(name)
    return applied, kept


def missing_message(app_root: Path | str) -> str:
    """What to tell a user who has no local.settings.json yet (start.sh and the server say it)."""
    root = Path(app_root)
    example = root / EXAMPLE_NAME
    create = (
        f"cp {EXAMPLE_NAME} {FILE_NAME}" if example.is_file() else f"create {FILE_NAME}"
    )
    return (
        f"{FILE_NAME} not found in {root}: continuing with the environment only "
        f"(webhooks answer 403 until TWILIO_AUTH_TOKEN is set). To create it: {create}, "
        "then put your Twilio credentials in it (it is git-ignored)."
    )


# The Twilio credentials of local.settings.json.example. The SID is not a SID (the app's settings
# check names it), so the example never passes for an account; with the local stand-in of
# Twilio's API (`--twilio-api`) the host makes one up for the run (`stand_in_account`).
ACCOUNT_SID = "TWILIO_ACCOUNT_SID"
PLACEHOLDERS = {
    ACCOUNT_SID: "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "TWILIO_AUTH_TOKEN": "your_auth_token",
}


def stand_in_account(environ: MutableMapping[str, str] | None = None) -> bool:
    """With --twilio-api: when TWILIO_ACCOUNT_SID is unset or still the example's placeholder,
    set one made up for this run (random, no account's), which the stand-in takes like any;
    True when it did. A SID of your own is left as it is."""
    env = os.environ if environ is None else environ
    if env.get(ACCOUNT_SID, "").strip() not in ("", PLACEHOLDERS[ACCOUNT_SID]):
        return False
    env[ACCOUNT_SID] = "AC" + uuid.uuid4().hex
    return True


def placeholder_warning(environ: MutableMapping[str, str] | None = None) -> str | None:
    """The start-up warning when the Twilio credentials in effect are still the example's
    placeholders (names only, never a value), or None."""
    env = os.environ if environ is None else environ
    names = [name for name, value in PLACEHOLDERS.items() if env.get(name, "").strip() == value]
    if not names:
        return None
    return (
        f"warning: {' and '.join(names)} still hold{'s' if len(names) == 1 else ''} the "
        f"placeholder of {EXAMPLE_NAME}: make_call and send_sms will not work until you put "
        f"your account's credentials in {FILE_NAME} (Twilio Console, Account info). Without "
        "a Twilio account, serve with --twilio-api and a local stand-in of Twilio's API "
        "(python -m devhost.standin): the host then makes up an account SID for the run."
    )


STORAGE_SETTING = "AzureWebJobsStorage"


def storage_connection(
    app_root: Path | str, environ: MutableMapping[str, str] | None = None
) -> str:
    """AzureWebJobsStorage as the app will see it: the environment's (a shell variable wins, as
    for every setting), else local.settings.json's Values, else "" (unset).

    scripts/start.sh asks here whether to start Azurite (for `UseDevelopmentStorage=true`).
    Raises AppConfigError for an unreadable local.settings.json.
    """
    env = os.environ if environ is None else environ
    if STORAGE_SETTING in env:
        return env[STORAGE_SETTING]
    found = read(app_root)
    return "" if found is None else found.values.get(STORAGE_SETTING, "")
