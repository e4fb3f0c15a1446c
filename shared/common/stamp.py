"""The check stamp: a record, written beside a flow file (a call flow, a message flow) when the
check passed at deploy time, that lets the app's first request skip what the check proved.

Checking a flow's numbers against the call or SMS policy needs phonenumbers (about 25 ms to
import and load its metadata) on the first request a new instance answers: a third of the
webhook's cold start (docs/benchmark.md). The deploy checks the flow anyway, with the same
settings the app gets, so `scripts/check_flow.py --stamp` (run by the deploy) writes
`<flow>.checked`: digests of the flow file, of every module of the app that judged it and of
phonenumbers' own `__init__` (a new release of its metadata changes its version there), with the
raw values of the policy settings.

At run time the app reads the flow and, when the stamp matches all of that exactly, builds it
without the number policy (the numbers it names were judged already, by the same code, data and
settings); anything different (an edited flow, another setting, another version of the code or
of phonenumbers, a missing or unreadable stamp) and the flow is checked in full as before. A
stamp can only spare work: it never lets through a flow that the full check would refuse, short
of someone editing the deployed package by hand (who could as well edit the flow or the code).
Like a hash-checked .pyc, it is a cache, never a source: it is not kept in git (.gitignore).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from importlib.util import find_spec
from pathlib import Path

FORMAT = 1
SUFFIX = ".checked"
# Besides the app's own modules: the library whose metadata classifies the numbers.
LIBRARIES = ("phonenumbers",)


def path_for(flow_file: Path) -> Path:
    return flow_file.with_name(flow_file.name + SUFFIX)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as file:
            return _digest(file.read())
    except (OSError, ValueError):  # ValueError: a path no file can have (a NUL in a bad stamp)
        return None


def _library_digest(name: str) -> str | None:
    """The digest of a library's `__init__`, found as an import would find it, not imported."""
    try:
        spec = find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    return _file_digest(origin) if origin and origin.endswith(".py") else None


def _judges(root: Path) -> dict[str, dict[str, str | None]]:
    """The digests of the code that judged a flow in this process: every module of the app's
    `shared` package imported now (by path under `root`) and the libraries."""
    files = {}
    for name, module in list(sys.modules.items()):
        source = getattr(module, "__file__", None)
        if (name == "shared" or name.startswith("shared.")) and source:
            relative = Path(source).resolve().relative_to(root.resolve()).as_posix()
            files[relative] = _file_digest(os.path.join(root, relative))
    return {"files": dict(sorted(files.items())),
            "libraries": {name: _library_digest(name) for name in LIBRARIES}}


def write(flow_file: Path, flow_bytes: bytes, settings: Mapping[str, str | None],
          root: Path) -> Path:
    """Stamp `flow_file` (whose content is `flow_bytes`) as passed under `settings`, judged by
    the app at `root` as imported in this process (the check has run here)."""
    stamp = {
        "format": FORMAT,
        "flow": _digest(flow_bytes),
        "settings": dict(settings),
        "code": _judges(root),
    }
    target = path_for(flow_file)
    target.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return target


def mismatch(flow_file: Path, flow_bytes: bytes, settings: Mapping[str, str | None],
             root: Path, judges: tuple[str, ...]) -> str | None:
    """None when the stamp beside `flow_file` vouches for this flow under these settings and this
    code, `judges` among it (the check's own modules: a stamp written by hand that leaves them
    out would vouch for a flow whatever they say); else why not, in a few words (for the log)."""
    try:
        stamp = json.loads(path_for(flow_file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no stamp"
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return "the stamp is unreadable"
    if not isinstance(stamp, dict) or stamp.get("format") != FORMAT:
        return "the stamp is of another format"
    if stamp.get("flow") != _digest(flow_bytes):
        return "the flow changed since it was stamped"
    if stamp.get("settings") != dict(settings):
        return "the call policy's settings differ from the stamp's"
    code = stamp.get("code")
    files = code.get("files") if isinstance(code, dict) else None
    libraries = code.get("libraries") if isinstance(code, dict) else None
    if not isinstance(files, dict) or not files or not isinstance(libraries, dict) \
            or set(libraries) != set(LIBRARIES):
        return "the stamp names no code"
    if not set(judges) <= set(files):
        return "the stamp does not name the code that judges the flow"
    for relative, digest in files.items():
        # Plain strings, not pathlib: this runs on a new instance's first call (docs/benchmark.md).
        inside = not relative.startswith("/") and ".." not in relative.split("/")
        if digest is None or not inside or _file_digest(os.path.join(root, relative)) != digest:
            return f"{relative[:80]} differs from the code that stamped the flow"
    for name, digest in libraries.items():
        if digest is None or _library_digest(name) != digest:
            return f"{name} differs from the version that stamped the flow"
    return None
