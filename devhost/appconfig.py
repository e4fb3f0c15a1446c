"""Read a function app the way the Functions host does: host.json plus one function.json per folder.

The host, not the worker, owns routing and authorisation: it reads `extensions.http.routePrefix`,
each HTTP trigger's `route`, `methods` and `authLevel`, and sends the worker only the metadata
it needs to load a function. It also owns the queue trigger's listener: each queueTrigger's
`queueName` and `connection`, and `extensions.queues` (batchSize, maxDequeueCount, ...), with the
Azure Storage Queues extension's defaults and range checks (QueuesOptions). This module is that
reading, kept free of the worker so the config tests can use it too.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote

DEFAULT_ROUTE_PREFIX = "api"
DEFAULT_SCRIPT_FILE = "__init__.py"
HTTP_TRIGGER = "httptrigger"
QUEUE_TRIGGER = "queuetrigger"
# The setting a storage binding without `connection` uses, and the prefix the host also tries
# (`"connection": "MyStorage"` finds MyStorage, else AzureWebJobsMyStorage).
DEFAULT_STORAGE_CONNECTION = "AzureWebJobsStorage"
STORAGE_CONNECTION_PREFIX = "AzureWebJobs"
# A queue name as Azure Storage accepts it: 3-63 lower-case letters, digits and single hyphens,
# starting and ending with a letter or digit.
QUEUE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
POISON_SUFFIX = "-poison"

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
    """A route template as a regular expression: literal segments match case-insensitively,
    like the host. The expression is compiled when a request first tries the route: the host
    finds most routes by their path (worker_host's `_by_path`), so a cold start compiles its own
    route, not every function's (each costs about 0.1 ms, paid per function by the benchmark's
    cold start, where the real host does this in .NET before the worker starts)."""

    template: str
    regex: str
    literal_segments: int

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.regex)

    @classmethod
    def compile(cls, template: str) -> RouteTemplate:
        template = template.strip("/")
        regex = ""
        literals = 0
        names: set[str] = set()
        for segment in template.split("/") if template else []:
            if not segment:
                continue
            optional = False
            part_regex = ""
            position = 0
            for match in _PARAMETER.finditer(segment):
                part_regex += re.escape(segment[position : match.start()])
                stars, name, constraints, question = match.groups()
                if name.lower() in names:  # as the host refuses it when it starts
                    raise AppConfigError(f"the route template {template!r} names the parameter "
                                         f"{{{name}}} more than once")
                names.add(name.lower())
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
        return cls(template, f"(?i:{regex})/?", literals)

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
class QueueTrigger:
    """A queueTrigger binding: the queue the host's listener polls and how it connects.

    `queue_name` is as written (it may hold `%Setting%` expressions, resolved from app settings
    when the listener starts); `connection` is the app setting's name, AzureWebJobsStorage when
    the binding names none. `data_type` is function.json's dataType ("binary" sends bytes).
    """

    param_name: str
    queue_name: str
    connection: str
    data_type: str = ""


@dataclass(frozen=True)
class FunctionSpec:
    """One function.json, resolved against its folder.

    `trigger` is the HTTP trigger (None for any other); `queue_trigger` the queue trigger.
    """

    name: str
    directory: Path
    script_file: Path
    entry_point: str
    bindings: tuple[Mapping[str, Any], ...]
    disabled: bool
    trigger: HttpTrigger | None
    queue_trigger: QueueTrigger | None = None
    function_id: str = field(default_factory=lambda: str(uuid.uuid4()))


# QueuesOptions' limits (Microsoft.Azure.WebJobs.Extensions.Storage.Queues).
MAX_BATCH_SIZE = 32  # the most messages one Get Messages call returns
MIN_POLLING_INTERVAL = 0.1  # QueuePollingIntervals.Minimum, 100 ms
DEFAULT_MAX_POLLING_INTERVAL = 60.0  # QueuePollingIntervals.DefaultMaximum, 1 min
# What the extension uses instead of the default when the host runs in the Development
# environment, as under `func start` ("for local development the maximum polling interval
# defaults to two seconds"); a maxPollingInterval in host.json wins over both.
DEVELOPMENT_MAX_POLLING_INTERVAL = 2.0
MESSAGE_ENCODINGS = ("base64", "none")


@dataclass(frozen=True)
class QueuesOptions:
    """host.json `extensions.queues`, with the extension's defaults (all times in seconds).

    `new_batch_threshold` defaults to batch_size // 2 (the extension multiplies that by the
    vCPU count on App Service and Premium plans; 1 on Consumption and here).
    `max_polling_interval_configured` says whether host.json set maxPollingInterval, since the
    local default differs (`polling_interval_limit`).
    """

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = DEFAULT_MAX_POLLING_INTERVAL
    message_encoding: str = "base64"
    max_polling_interval_configured: bool = False

    def polling_interval_limit(self, development: bool = True) -> float:
        """The longest wait between polls of an empty queue: host.json's maxPollingInterval,
        else 1 minute, or 2 seconds in the Development environment (`func start`, and here)."""
        if development and not self.max_polling_interval_configured:
            return DEVELOPMENT_MAX_POLLING_INTERVAL
        return self.max_polling_interval

    @property
    def max_concurrency(self) -> int:
        """Messages one function processes at once: batchSize plus newBatchThreshold."""
        return self.batch_size + self.new_batch_threshold


@dataclass(frozen=True)
class AppConfig:
    """The host's view of an app: route prefix, function timeout, queue options, functions."""

    root: Path
    route_prefix: str
    function_timeout: float | None
    functions: Mapping[str, FunctionSpec]
    queues: QueuesOptions = field(default_factory=QueuesOptions)

    @property
    def queue_functions(self) -> list[FunctionSpec]:
        """The enabled functions with a queue trigger, by name."""
        return [f for _, f in sorted(self.functions.items())
                if f.queue_trigger is not None and not f.disabled]


def read_json(path: Path | str) -> Any:
    """Parse a JSON file, with an error that names the file (the host's errors do too)."""
    try:
        with open(path, encoding="utf-8-sig") as file:
            return json.loads(file.read())
    except (OSError, ValueError) as error:
        raise AppConfigError(f"{path}: {error}") from error


def parse_timespan(value: str, name: str = "functionTimeout") -> float | None:
    """A host.json TimeSpan ("hh:mm:ss", "hh:mm:ss.fff", "d.hh:mm:ss"; "-1" for none) in
    seconds; `name` is the setting, for the error message."""
    value = value.strip()
    if value in ("-1", ""):
        return None
    text = value
    days = 0
    if "." in text.split(":")[0]:
        day_text, text = text.split(".", 1)
        days = _timespan_int(day_text, name, value)
    parts = text.split(":")
    if len(parts) != 3:
        raise AppConfigError(f"{name} {value!r} is not hh:mm:ss")
    hours, minutes = _timespan_int(parts[0], name, value), _timespan_int(parts[1], name, value)
    try:
        seconds = float(parts[2])
    except ValueError:
        raise AppConfigError(f"{name} {value!r} is not hh:mm:ss") from None
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _timespan_int(text: str, name: str, value: str) -> int:
    if not text.strip().isdigit():
        raise AppConfigError(f"{name} {value!r} is not hh:mm:ss")
    return int(text)


# An app setting of this prefix overrides a host.json value, as on Azure: its path's parts are
# joined with `__` (AzureFunctionsJobHost__extensions__queues__batchSize=4).
HOST_JSON_OVERRIDE = "azurefunctionsjobhost__"


def _host_json(root: Path) -> dict[str, Any]:
    path = root / "host.json"
    if not path.is_file():
        raise AppConfigError(f"{root} is not a function app: host.json is missing")
    data = read_json(path)
    if not isinstance(data, dict):
        raise AppConfigError(f"{path}: expected a JSON object")
    return with_overrides(data, os.environ)


def with_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """host.json with the `AzureFunctionsJobHost__...` settings of `environ` applied over it (the
    names matched case-insensitively, the values kept as the strings they are, which the
    host's configuration binding then converts, as it does)."""
    for name, value in sorted(environ.items()):
        if not name.lower().startswith(HOST_JSON_OVERRIDE):
            continue
        *parents, leaf = name[len(HOST_JSON_OVERRIDE):].split("__")
        node = data
        for part in parents:
            key = next((k for k in node if k.lower() == part.lower()), part)
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[next((k for k in node if k.lower() == leaf.lower()), leaf)] = value
    return data


def _prefix_and_timeout(data: Mapping[str, Any]) -> tuple[str, float | None]:
    """(routePrefix, functionTimeout seconds) from host.json, with the host's defaults."""
    http = ((data.get("extensions") or {}).get("http")) or {}
    prefix = http.get("routePrefix", DEFAULT_ROUTE_PREFIX)
    timeout = data.get("functionTimeout")
    return str(prefix).strip("/"), parse_timespan(str(timeout)) if timeout is not None else None


def read_queues_options(host_json: Mapping[str, Any], source: str = "host.json") -> QueuesOptions:
    """`extensions.queues` of a parsed host.json as the extension binds it, checked as
    QueuesOptions checks it (an out-of-range value stops the host from starting)."""
    section = (host_json.get("extensions") or {}).get("queues")
    if section is None:
        return QueuesOptions()
    if not isinstance(section, Mapping):
        raise AppConfigError(f"{source}: extensions.queues must be an object")
    # Configuration binding is case-insensitive, as for every host.json section.
    values = {str(k).lower(): v for k, v in section.items()}

    def number(key: str, name: str, default: int, low: int, high: int | None = None) -> int:
        raw = values.get(key, default)
        if isinstance(raw, bool) or not isinstance(raw, (int, str)) or not str(raw).strip() \
                .lstrip("-").isdigit():
            raise AppConfigError(f"{source}: extensions.queues.{name} {raw!r} is not an integer")
        result = int(raw)
        if result < low or (high is not None and result > high):
            limit = f"{low} to {high}" if high is not None else f"at least {low}"
            raise AppConfigError(
                f"{source}: extensions.queues.{name} is {result}; it must be {limit}")
        return result

    def timespan(key: str, name: str, default: float) -> float:
        raw = values.get(key)
        if raw is None:
            return default
        if not isinstance(raw, str):
            # Functions 1.x took milliseconds; 2.x and later parse a TimeSpan, so 2000 would
            # mean 2000 days (azure-webjobs-sdk#2967).
            raise AppConfigError(
                f"{source}: extensions.queues.{name} {raw!r} must be a TimeSpan string such as "
                '"00:00:02" (Functions 2.x and later; 1.x took milliseconds)')
        seconds = parse_timespan(raw, f"extensions.queues.{name}")
        if seconds is None or seconds < 0:
            raise AppConfigError(f"{source}: extensions.queues.{name} {raw!r} must not be negative")
        return seconds

    batch_size = number("batchsize", "batchSize", 16, 1, MAX_BATCH_SIZE)
    threshold = (number("newbatchthreshold", "newBatchThreshold", 0, 0)
                 if "newbatchthreshold" in values else batch_size // 2)
    max_polling = timespan("maxpollinginterval", "maxPollingInterval",
                           DEFAULT_MAX_POLLING_INTERVAL)
    if max_polling < MIN_POLLING_INTERVAL:
        raise AppConfigError(f"{source}: extensions.queues.maxPollingInterval must not be less "
                             "than 00:00:00.1 (100 ms)")
    encoding = str(values.get("messageencoding", "base64")).lower()
    if encoding not in MESSAGE_ENCODINGS:
        raise AppConfigError(f"{source}: extensions.queues.messageEncoding "
                             f"{values['messageencoding']!r} is not base64 or none")
    return QueuesOptions(
        batch_size=batch_size,
        new_batch_threshold=threshold,
        max_dequeue_count=number("maxdequeuecount", "maxDequeueCount", 5, 1),
        visibility_timeout=timespan("visibilitytimeout", "visibilityTimeout", 0.0),
        max_polling_interval=max_polling,
        message_encoding=encoding,
        max_polling_interval_configured="maxpollinginterval" in values,
    )


def valid_queue_name(name: str) -> bool:
    """Azure Storage's rule for queue names."""
    return QUEUE_NAME.fullmatch(name) is not None


def poison_queue_name(name: str) -> str | None:
    """The queue failed messages move to, `<name>-poison`; None for a queue that is itself a
    poison queue, or whose name would grow too long (the extension then keeps failed messages
    invisible instead of moving them)."""
    if name.lower().endswith(POISON_SUFFIX):
        return None
    candidate = name + POISON_SUFFIX
    return candidate if valid_queue_name(candidate) else None


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


def _queue_trigger(path: str, bindings: list[Mapping[str, Any]]) -> QueueTrigger | None:
    for binding in bindings:
        if str(binding.get("type", "")).lower() != QUEUE_TRIGGER:
            continue
        queue_name = str(binding.get("queueName") or "").strip()
        if not queue_name:
            raise AppConfigError(f"{path}: the queueTrigger binding has no queueName")
        # The extension lower-cases the name before checking it; %Setting% is resolved later.
        if "%" not in queue_name and not valid_queue_name(queue_name.lower()):
            raise AppConfigError(
                f"{path}: queueName {queue_name!r} is not a valid queue name (3-63 lower-case "
                "letters, digits and single hyphens, starting and ending with a letter or digit)")
        return QueueTrigger(
            param_name=str(binding.get("name", "")),
            queue_name=queue_name,
            connection=str(binding.get("connection") or "").strip() or DEFAULT_STORAGE_CONNECTION,
            data_type=str(binding.get("dataType") or "").lower(),
        )
    return None


def read_function(directory: Path, route_prefix: str = DEFAULT_ROUTE_PREFIX) -> FunctionSpec:
    """One function folder; scriptFile is resolved against it, as the host resolves it: made
    absolute and normalised (Path.GetFullPath), symbolic links left as they are."""
    # Plain strings until the spec is made: the benchmark's cold start reads every function
    # here, where the real host reads them in .NET before the worker starts.
    folder = os.path.abspath(directory)
    path = os.path.join(folder, "function.json")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("bindings"), list):
        raise AppConfigError(f"{path}: no bindings array")
    bindings = [b for b in data["bindings"] if isinstance(b, dict)]
    script = os.path.normpath(
        os.path.join(folder, str(data.get("scriptFile") or DEFAULT_SCRIPT_FILE)))
    name = os.path.basename(folder)
    return FunctionSpec(
        name=name,
        directory=Path(folder),
        script_file=Path(script),
        entry_point=str(data.get("entryPoint") or ""),
        bindings=tuple(bindings),
        disabled=bool(data.get("disabled", False)),
        trigger=_http_trigger(name, bindings, route_prefix),
        queue_trigger=_queue_trigger(path, bindings),
    )


def read_app(root: Path | str) -> AppConfig:
    """Every folder of the app root that holds a function.json is a function, as for the host."""
    root = Path(root).resolve()
    host_json = _host_json(root)
    prefix, timeout = _prefix_and_timeout(host_json)
    queues = read_queues_options(host_json, str(root / "host.json"))
    # os.scandir: the entry says whether it is a folder, where Path.is_dir asks the file system
    # again for each of the root's entries (.git, node_modules, ...), on every start.
    folders = sorted(entry.name for entry in os.scandir(root) if entry.is_dir()
                     and os.path.isfile(os.path.join(entry.path, "function.json")))
    functions = {name: read_function(root / name, prefix) for name in folders}
    return AppConfig(root=root, route_prefix=prefix, function_timeout=timeout, functions=functions,
                     queues=queues)
