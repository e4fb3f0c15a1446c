"""Read a function app the way the Functions host does: host.json plus one function.json per folder.

The host, not the worker, owns routing and authorisation: it reads `extensions.http.routePrefix`,
each HTTP trigger's `route`, `methods` and `authLevel`, and sends the worker only the metadata
it needs to load a function. This module is that reading, kept free of the worker so the config
tests can use it too.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

DEFAULT_ROUTE_PREFIX = "api"
DEFAULT_SCRIPT_FILE = "__init__.py"
HTTP_TRIGGER = "httptrigger"

# ASP.NET Core route constraints the host accepts, as regular expressions over one segment.
# Constraints not listed here (minlength(2), regex(...), ...) are accepted without checking.
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"\{?[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}\}?",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
}
_PARAMETER = re.compile(r"\{(\*{0,2})([A-Za-z_][A-Za-z0-9_]*)((?::[^{}?=]+)*)(\?)?(?:=[^{}]*)?\}")


class AppConfigError(ValueError):
    """host.json or a function.json cannot be read the way the host reads it."""


@dataclass(frozen=True)
class RouteTemplate:
    """A compiled route template: literal segments match case-insensitively, like the host."""

    template: str
    pattern: re.Pattern[str]
    literal_segments: int

    @classmethod
    def compile(cls, template: str) -> RouteTemplate:
        template = template.strip("/")
        regex = ""
        literals = 0
        for segment in template.split("/") if template else []:
            if not segment:
                continue
            optional = False
            part_regex = ""
            position = 0
            for match in _PARAMETER.finditer(segment):
                part_regex += re.escape(segment[position : match.start()])
                stars, name, constraints, question = match.groups()
                if stars:
                    part_regex += f"(?P<{name}>.*)"
                    optional = True
                else:
                    kinds = [c for c in constraints.split(":") if c]
                    body = next((_CONSTRAINTS[k] for k in kinds if k in _CONSTRAINTS), "[^/]+")
                    part_regex += f"(?P<{name}>{body})"
                    optional = optional or bool(question)
                position = match.end()
            if position == 0:
                literals += 1
            part_regex += re.escape(segment[position:])
            regex += f"(?:/{part_regex})?" if optional else f"/{part_regex}"
        return cls(template, re.compile(f"(?i:{regex})/?"), literals)

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters (URL-decoded, as the host passes them) or None if no match."""
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {k: unquote(v) for k, v in found.groupdict().items() if v is not None}


@dataclass(frozen=True)
class HttpTrigger:
    """What the host needs from an httpTrigger binding to route and authorise a request."""

    param_name: str
    route: str  # as written in function.json (or the function's name), without the prefix
    template: RouteTemplate  # prefix and route, compiled
    methods: frozenset[str] | None  # None: every method, as when `methods` is absent
    auth_level: str  # anonymous | function | admin (lower-case)


@dataclass(frozen=True)
class FunctionSpec:
    """One function.json, resolved against its folder."""

    name: str
    directory: Path
    script_file: Path
    entry_point: str
    bindings: tuple[Mapping[str, Any], ...]
    disabled: bool
    trigger: HttpTrigger | None
    function_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class AppConfig:
    """The host's view of an app: route prefix, function timeout and every function."""

    root: Path
    route_prefix: str
    function_timeout: float | None
    functions: Mapping[str, FunctionSpec]


def read_json(path: Path) -> Any:
    """Parse a JSON file, with an error that names the file (the host's errors do too)."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as error:
        raise AppConfigError(f"{path}: {error}") from error


def parse_timespan(value: str) -> float | None:
    """host.json's functionTimeout ("hh:mm:ss", "d.hh:mm:ss", "-1" for none) in seconds."""
    value = value.strip()
    if value in ("-1", ""):
        return None
    days = 0
    if "." in value.split(":")[0]:
        day_text, value = value.split(".", 1)
        days = int(day_text)
    parts = value.split(":")
    if len(parts) != 3:
        raise AppConfigError(f"functionTimeout {value!r} is not hh:mm:ss")
    hours, minutes, seconds = int(parts[0]), int(parts[1]), float(parts[2])
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def read_host_json(root: Path) -> tuple[str, float | None]:
    """(routePrefix, functionTimeout seconds) from host.json, with the host's defaults."""
    path = root / "host.json"
    if not path.is_file():
        raise AppConfigError(f"{root} is not a function app: host.json is missing")
    data = read_json(path)
    http = ((data.get("extensions") or {}).get("http")) or {}
    prefix = http.get("routePrefix", DEFAULT_ROUTE_PREFIX)
    timeout = data.get("functionTimeout")
    return str(prefix).strip("/"), parse_timespan(str(timeout)) if timeout is not None else None


def _http_trigger(
    name: str, bindings: list[Mapping[str, Any]], route_prefix: str
) -> HttpTrigger | None:
    for binding in bindings:
        if str(binding.get("type", "")).lower() != HTTP_TRIGGER:
            continue
        methods = binding.get("methods")
        route = str(binding.get("route") or name).strip("/")
        return HttpTrigger(
            param_name=str(binding.get("name", "")),
            route=route,
            template=RouteTemplate.compile(f"{route_prefix}/{route}"),
            methods=frozenset(str(m).upper() for m in methods) if methods else None,
            auth_level=str(binding.get("authLevel") or "function").lower(),
        )
    return None


def read_function(directory: Path, route_prefix: str = DEFAULT_ROUTE_PREFIX) -> FunctionSpec:
    """One function folder; scriptFile is resolved against it, as the host resolves it."""
    data = read_json(directory / "function.json")
    if not isinstance(data, dict) or not isinstance(data.get("bindings"), list):
        raise AppConfigError(f"{directory / 'function.json'}: no bindings array")
    bindings = [b for b in data["bindings"] if isinstance(b, dict)]
    script = directory / str(data.get("scriptFile") or DEFAULT_SCRIPT_FILE)
    return FunctionSpec(
        name=directory.name,
        directory=directory.resolve(),
        script_file=script.resolve(),
        entry_point=str(data.get("entryPoint") or ""),
        bindings=tuple(bindings),
        disabled=bool(data.get("disabled", False)),
        trigger=_http_trigger(directory.name, bindings, route_prefix),
    )


def read_app(root: Path | str) -> AppConfig:
    """Every folder of the app root that holds a function.json is a function, as for the host."""
    root = Path(root).resolve()
    prefix, timeout = read_host_json(root)
    functions = {
        child.name: read_function(child, prefix)
        for child in sorted(root.iterdir())
        if child.is_dir() and (child / "function.json").is_file()
    }
    return AppConfig(root=root, route_prefix=prefix, function_timeout=timeout, functions=functions)
