"""An in-process stand-in for the Functions host, driving the real Python worker.

Calling `main()` directly misses what breaks a deploy: a binding name that does not match the
parameter, a route or method the host will not send, a request built differently from the way
the host builds it. So this module does the host's part around the worker library Azure runs
(`azure-functions-runtime-v1`): it sends the worker the same protobuf messages (init, load,
invocation), routes and authorises requests from function.json, and builds the worker's
`RpcHttp` the way `GrpcMessageConversionExtensions.ToRpcHttp` does.

Queue-triggered functions are invoked the way the host's Azure Storage Queues extension invokes
them (`invoke_queue`): the message body as the trigger's TypedData and the message's metadata
(Id, DequeueCount, InsertionTime, ...) as trigger metadata, from which the worker builds the
`azure.functions.QueueMessage`. `start_queues()` starts devhost.queues' listener, which polls
the queues and deletes, releases or poisons each message by the invocation's outcome.

The worker keeps its state in module globals (registry, protos, thread pool), as one worker
process per app does. So there is one worker per Python process here too: one event loop on a
daemon thread, shared by every `WorkerHost`, never closed. Async functions run on that loop and
sync functions on the worker's thread pool, exactly as in Azure, and a client an async function
caches (an aiohttp session, a Twilio client) stays bound to a loop that outlives each request.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit
from wsgiref.headers import Headers

from devhost import appconfig, protos
from devhost.appconfig import AppConfig, FunctionSpec

if TYPE_CHECKING:
    from devhost.queues import QueuePoller

logger = logging.getLogger("devhost")

T = TypeVar("T")
DEFAULT_BASE_URL = "http://localhost:7071"
HOST_VERSION = "4.0.0-devhost"
# Capabilities the host announces in WorkerInitRequest (a subset of a v4 host's).
HOST_CAPABILITIES = {"RpcHttpTriggerMetadataRemoved": "true", "RpcHttpBodyOnly": "true"}
KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"
_OCTET_OR_MULTIPART = ("application/octet-stream", "multipart/")


class FunctionLoadError(RuntimeError):
    """One or more functions failed to load through the worker; carries the worker's messages.

    `failures` maps each function name to the worker's message (`Type: text`), and
    `stack_traces` to the worker's stack trace, so a test failure shows what Azure would log.
    """

    def __init__(self, failures: Mapping[str, str], stack_traces: Mapping[str, str]) -> None:
        self.failures = dict(failures)
        self.stack_traces = dict(stack_traces)
        lines = [f"function {name!r} failed to load: {msg}" for name, msg in self.failures.items()]
        super().__init__("\n".join(lines))


@dataclass
class HostResponse:
    """An HTTP response as the host would send it.

    `headers` is case-insensitive and multi-valued (`headers.get_all("set-cookie")`); `function`
    names the function that answered (None for the host's own 404/401); `error` holds the
    worker's exception and stack trace when the invocation failed (the client only sees 500).
    """

    status: int
    headers: Headers
    body: bytes = b""
    function: str | None = None
    error: str | None = None
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def cookies(self) -> list[str]:
        """The Set-Cookie header values, one per cookie."""
        return self.headers.get_all("set-cookie")

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass(frozen=True)
class QueueMessageData:
    """A queue message as the listener received it, for `WorkerHost.invoke_queue`.

    `body` is the message's content with the messageEncoding undone (base64 decoded); the
    times are the service's (UTC). Left at None they are sent as the extension sends a message
    without them: InsertionTime now, ExpirationTime and NextVisibleTime DateTimeOffset.MaxValue.
    """

    id: str
    body: bytes
    dequeue_count: int = 1
    insertion_time: datetime | None = None
    expiration_time: datetime | None = None
    next_visible_time: datetime | None = None
    pop_receipt: str = ""


@dataclass
class QueueInvocationResult:
    """How a queue-triggered invocation ended: `succeeded` is False when the function raised
    (or ran past functionTimeout), with the worker's exception and stack trace in `error`."""

    function: str
    invocation_id: str
    succeeded: bool
    error: str | None = None
    elapsed: float = 0.0


# DateTimeOffset.MaxValue as Json.NET writes it: the extension's stand-in for a missing time.
_MAX_DATETIMEOFFSET = "9999-12-31T23:59:59.9999999+00:00"


def _dotnet_json_time(value: datetime | None, default: str | None = None) -> str:
    """A DateTimeOffset as the host's ToRpc sends it: JSON (Json.NET, ISO 8601, offset +00:00,
    fraction only when non-zero). The worker json-decodes it and parses the string."""
    if value is None:
        text = default or datetime.now(UTC).isoformat()
    else:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        text = value.astimezone(UTC).isoformat()
    if "." in text:
        whole, rest = text.split(".", 1)
        digits, offset = rest[:-6], rest[-6:]
        digits = digits.rstrip("0")
        text = f"{whole}.{digits}{offset}" if digits else f"{whole}{offset}"
    return json.dumps(text)


def _utf8(text: str) -> str:
    """A .NET string as the host sends it over gRPC: UTF-8, an unpaired surrogate (which JSON's
    \\ud800 escape can make) replaced by U+FFFD as .NET's encoder does; Python's protobuf
    refuses it outright, which would fail every delivery of such a message."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def _binding_data_value(value: Any) -> str | dict[str, Any] | None:
    """Utility.ConvertPropertyValue: an object stays an object, anything else is `(string)` of
    the JSON token (true -> "True", as .NET writes booleans); null is dropped."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    return str(value)


@dataclass
class _WorkerRequest:
    """The envelope the worker's handlers take: a StreamingMessage plus host properties."""

    name: str
    request: Any
    properties: dict[str, Any] = field(default_factory=dict)


class _WorkerRuntime:
    """The one worker of this process: its event loop thread, protos and capabilities."""

    _instance: _WorkerRuntime | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        import azure_functions_runtime_v1 as worker

        self.worker = worker
        self.protos = protos.load()
        self.properties = {"host": self, "protos": self.protos}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self._run_loop, name="devhost-worker-loop", daemon=True
        )
        self.thread.start()
        self.capabilities: dict[str, str] = self.run(self._init())

    @classmethod
    def get(cls) -> _WorkerRuntime:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("WorkerHost.request() called from the worker's own event loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.submit(coro).result(timeout)

    async def _init(self) -> dict[str, str]:
        p = self.protos
        message = p.StreamingMessage(
            request_id=str(uuid.uuid4()),
            worker_init_request=p.WorkerInitRequest(
                host_version=HOST_VERSION, capabilities=HOST_CAPABILITIES
            ),
        )
        response = await self.worker.worker_init_request(
            _WorkerRequest("worker_init_request", message, self.properties)
        )
        if response.result.status != p.StatusResult.Success:
            raise RuntimeError(f"worker init failed: {response.result.exception.message}")
        await self.worker.functions_metadata_request(
            _WorkerRequest("functions_metadata_request", p.StreamingMessage(), self.properties)
        )
        if self.worker.get_threadpool_executor() is None:
            self.worker.start_threadpool_executor()
        return dict(response.capabilities)


def _prepare_imports(root: Path) -> None:
    """Make `__app__.<function>` resolve inside this app, as if the worker had just started.

    The worker imports each function as `__app__.<folder>` from a namespace package whose path
    is every app root it has seen. Loading a second app (a fixture, a copy of this one) must not
    reuse a module of the same folder name from another root.
    """
    from azure_functions_runtime_v1 import loader

    dirs = loader._submodule_dirs  # the list the worker's `__app__.__path__` is bound to
    while str(root) in dirs:
        dirs.remove(str(root))
    dirs.insert(0, str(root))
    for name, module in list(sys.modules.items()):
        if not name.startswith(loader._AZURE_NAMESPACE + "."):
            continue
        folder = root / name.split(".")[1]
        file = getattr(module, "__file__", None)
        if file is None or not Path(file).resolve().is_relative_to(folder):
            del sys.modules[name]
    # Absolute imports of the app's own packages (`from shared import ...`) resolve from the
    # app root, the worker's working directory in Azure.
    if str(root) not in sys.path:
        sys.path.append(str(root))


def _join(values: list[str]) -> str:
    """ASP.NET's StringValues.ToString(): repeated headers and query keys joined by commas."""
    return ",".join(values)


def _grouped(pairs: Iterable[tuple[str, str]], lower: bool) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key.lower() if lower else key, []).append(value)
    return grouped


def _escape(value: str) -> str:
    """Uri.EscapeDataString, which ASP.NET applies to cookie names and values."""
    return quote(value, safe="-_.~")


def format_set_cookie(cookie: Any) -> str:
    """An RpcHttpCookie as the Set-Cookie line ASP.NET Core writes (CookieOptions, path "/")."""
    parts = [f"{_escape(cookie.name)}={_escape(cookie.value)}"]
    if cookie.HasField("expires"):
        expires = cookie.expires.value.ToDatetime(tzinfo=UTC)
        parts.append("expires=" + expires.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    if cookie.HasField("max_age"):
        parts.append(f"max-age={int(cookie.max_age.value)}")
    if cookie.HasField("domain"):
        parts.append(f"domain={cookie.domain.value}")
    parts.append(f"path={cookie.path.value if cookie.HasField('path') else '/'}")
    if cookie.HasField("secure") and cookie.secure.value:
        parts.append("secure")
    same_site = {1: "lax", 2: "strict", 3: "none"}.get(cookie.same_site)
    if same_site:
        parts.append(f"samesite={same_site}")
    if cookie.HasField("http_only") and cookie.http_only.value:
        parts.append("httponly")
    return "; ".join(parts)


def _typed_bytes(data: Any) -> bytes:
    kind = data.WhichOneof("data")
    if kind in ("bytes", "stream"):
        return bytes(getattr(data, kind))
    if kind in ("string", "json"):
        return getattr(data, kind).encode("utf-8")
    if kind is None:
        return b""
    return str(getattr(data, kind)).encode("utf-8")


_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})")


def host_traceparent(incoming: list[str] | None) -> str:
    """The W3C trace context the host hands an invocation (InvocationRequest.trace_context):
    its own span for the invocation, continuing the request's `traceparent` header when one is
    valid (as the host's Activity does), else the start of a new trace (a queue message's)."""
    found = _TRACEPARENT.fullmatch((incoming or [""])[0].strip())
    trace_id = found.group(1) if found and found.group(1) != "0" * 32 else secrets.token_hex(16)
    flags = found.group(2) if found else "01"
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def _empty(status: int, reason: str | None = None) -> HostResponse:
    """The host's own answers (404, 401, ...) have no body; the reason is a dev-only header."""
    headers = Headers([("Content-Length", "0")])
    if reason:
        headers.add_header("X-Devhost-Reason", reason)
    return HostResponse(status=status, headers=headers)


class WorkerHost:
    """The function app at `app_root`, loaded through the real worker, answering requests.

    Use `WorkerHost.start(...)` (sync, usable from plain pytest tests), then `request(...)`.
    Function keys are enforced for `authLevel: function` only when some key is configured
    (`func start` enforces none locally; Azure always does).
    """

    def __init__(
        self,
        config: AppConfig,
        runtime: _WorkerRuntime,
        function_keys: Mapping[str, str | Iterable[str]] | None,
        host_keys: Iterable[str],
        master_key: str | None,
    ) -> None:
        self.config = config
        self._runtime = runtime
        self._function_keys = {
            name: ({keys} if isinstance(keys, str) else set(keys))
            for name, keys in (function_keys or {}).items()
        }
        self._host_keys = set(host_keys)
        self._master_key = master_key
        self._closed = False
        self._pollers: list[QueuePoller] = []
        self.load_seconds = 0.0
        # Literal segments first, as ASP.NET routing prefers them over parameters.
        self._routes = sorted(
            (f for f in config.functions.values() if f.trigger is not None and not f.disabled),
            key=lambda f: -f.trigger.template.literal_segments if f.trigger else 0,
        )
        # Routes without parameters, by path: the host's routing finds a route through a table
        # (ASP.NET Core's matcher), not by trying each in turn, which here would charge a
        # request for every function listed before its own (the benchmark measures through this
        # host). Only a first guess: `_match` confirms it with the route's own pattern.
        self._by_path = {
            f"/{f.trigger.template.template}".lower(): f
            for f in reversed(self._routes)
            if f.trigger is not None and "{" not in f.trigger.template.template
        }

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        app_root: Path | str,
        *,
        function_keys: Mapping[str, str | Iterable[str]] | None = None,
        host_keys: Iterable[str] = (),
        master_key: str | None = None,
    ) -> WorkerHost:
        """Read the app, initialise the worker (once per process) and load every function.

        Raises FunctionLoadError, naming each function that failed with the worker's message,
        and appconfig.AppConfigError when host.json or a function.json cannot be read.
        """
        __tracebackhide__ = True  # pytest: show the load error, not the host's plumbing
        began = time.perf_counter()
        config = appconfig.read_app(app_root)
        runtime = _WorkerRuntime.get()
        host = cls(config, runtime, function_keys, host_keys, master_key)
        try:
            runtime.run(host._load_all())
        except FunctionLoadError as error:
            # Raised again here so the traceback ends in the caller, not on the worker's loop.
            raise FunctionLoadError(error.failures, error.stack_traces) from None
        host.load_seconds = time.perf_counter() - began
        logger.debug("loaded %s in %.3f s", config.root, host.load_seconds)
        return host

    def close(self) -> None:
        """Stop answering, after stopping the queue listeners `start_queues` started (their
        in-flight messages finish first). The worker (and its loop) lives on for the next host
        in the process."""
        pollers, self._pollers = self._pollers, []
        for poller in pollers:
            poller.stop()
        self._closed = True
        # The app's cached REST and storage clients hold aiohttp sessions bound to the worker's
        # loop: close them there (the next host builds them again), so none is left unclosed.
        try:
            self._runtime.submit(close_app_clients()).result(5)
        except Exception as error:  # closing is best effort; never fail a shutdown on it
            logger.debug("closing the app's clients failed: %s", type(error).__name__)

    def __enter__(self) -> WorkerHost:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _load_all(self) -> None:
        _prepare_imports(self.config.root)
        failures: dict[str, str] = {}
        traces: dict[str, str] = {}
        for spec in self.config.functions.values():
            if spec.disabled:
                continue
            result = (await self._load(spec)).result
            if result.status != self._runtime.protos.StatusResult.Success:
                failures[spec.name] = result.exception.message
                traces[spec.name] = result.exception.stack_trace
        if failures:
            raise FunctionLoadError(failures, traces)

    async def _load(self, spec: FunctionSpec) -> Any:
        import json

        p = self._runtime.protos
        directions = {"in": p.BindingInfo.Direction.Value("in"), "out": p.BindingInfo.out,
                      "inout": p.BindingInfo.inout}
        data_types = {"string": p.BindingInfo.string, "binary": p.BindingInfo.binary,
                      "stream": p.BindingInfo.stream}
        bindings = {}
        for binding in spec.bindings:
            bindings[str(binding.get("name", ""))] = p.BindingInfo(
                type=str(binding.get("type", "")),
                direction=directions.get(str(binding.get("direction", "in")).lower(), 0),
                data_type=data_types.get(str(binding.get("dataType", "")).lower(), 0),
            )
        metadata = p.RpcFunctionMetadata(
            name=spec.name,
            directory=str(spec.directory),
            script_file=str(spec.script_file),
            entry_point=spec.entry_point,
            bindings=bindings,
            language="python",
            raw_bindings=[json.dumps(b) for b in spec.bindings],
            function_id=spec.function_id,
        )
        message = p.StreamingMessage(
            request_id=str(uuid.uuid4()),
            function_load_request=p.FunctionLoadRequest(
                function_id=spec.function_id, metadata=metadata
            ),
        )
        worker = self._runtime.worker
        return await worker.function_load_request(
            _WorkerRequest("function_load_request", message, self._runtime.properties)
        )

    # -- requests ----------------------------------------------------------------------------

    @property
    def functions(self) -> Mapping[str, FunctionSpec]:
        return self.config.functions

    def url_for(self, function: str, base_url: str = DEFAULT_BASE_URL) -> str:
        """The URL `func start` prints for a function (route parameters left as templates)."""
        trigger = self.config.functions[function].trigger
        if trigger is None:
            raise ValueError(f"{function} has no HTTP trigger")
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        return f"{base_url.rstrip('/')}{prefix}/{trigger.route}"

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: bytes | str = b"",
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | None = None,
    ) -> HostResponse:
        """Send one request through routing, key checks and the worker; thread-safe.

        `url` is a path with its query ("/api/voice_url?x=1") or an absolute URL. The Host header
        defaults to the one in `base_url` (or in the absolute URL), which also gives the scheme.
        """
        future = self._runtime.submit(
            self._handle(method, url, headers=headers, body=body, base_url=base_url)
        )
        return future.result(timeout)

    async def arequest(self, method: str, url: str, **kwargs: Any) -> HostResponse:
        """`request` for async callers on any event loop (the work runs on the worker's loop)."""
        future = self._runtime.submit(self._handle(method, url, **kwargs))
        return await asyncio.wrap_future(future)

    def _match(self, path: str, method: str) -> tuple[FunctionSpec | None, dict[str, str], str]:
        """(function, route params, reason); the host answers 404 for a wrong method too."""
        guess = self._by_path.get(path.lower().removesuffix("/"))
        if guess is not None and guess.trigger is not None and (
            guess.trigger.methods is None or method in guess.trigger.methods
        ):
            params = guess.trigger.template.match(path)
            if params is not None:
                return guess, params, ""
        wrong_method: FunctionSpec | None = None
        for spec in self._routes:
            assert spec.trigger is not None
            params = spec.trigger.template.match(path)
            if params is None:
                continue
            if spec.trigger.methods is None or method in spec.trigger.methods:
                return spec, params, ""
            wrong_method = wrong_method or spec
        if wrong_method is not None and wrong_method.trigger is not None:
            allowed = ",".join(sorted(wrong_method.trigger.methods or ()))
            return None, {}, f"{wrong_method.name} accepts {allowed}, not {method}"
        return None, {}, "no function route matches"

    def _authorised(self, spec: FunctionSpec, key: str | None) -> bool:
        assert spec.trigger is not None
        level = spec.trigger.auth_level
        if level == "anonymous":
            return True
        if not (self._function_keys or self._host_keys or self._master_key):
            return True  # no keys configured: like `func start`, which enforces none locally
        if level == "admin":
            valid = {self._master_key}
        else:
            valid = set(self._function_keys.get(spec.name, ())) | self._host_keys
            valid.add(self._master_key)
        return key is not None and any(hmac.compare_digest(key, v) for v in valid if v)

    async def _handle(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: bytes | str = b"",
        base_url: str = DEFAULT_BASE_URL,
    ) -> HostResponse:
        began = time.perf_counter()
        response = await self._dispatch(method, url, headers, body, base_url)
        response.elapsed = time.perf_counter() - began
        return response

    async def _dispatch(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
        body: bytes | str,
        base_url: str,
    ) -> HostResponse:
        if self._closed:
            raise RuntimeError("this WorkerHost is closed")
        method = method.upper()
        raw_body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        pairs = list(headers.items() if isinstance(headers, Mapping) else headers or [])
        target = urlsplit(url if "://" in url else base_url.rstrip("/") + "/" + url.lstrip("/"))
        names = {k.lower() for k, _ in pairs}
        if "host" not in names:
            pairs.insert(0, ("Host", target.netloc))
        if raw_body and "content-length" not in names:
            pairs.append(("Content-Length", str(len(raw_body))))
        grouped = _grouped(pairs, lower=True)
        host_header = grouped["host"][0]
        path = target.path or "/"

        if path == "/" and method in ("GET", "HEAD"):
            return self._splash()
        spec, route_params, reason = self._match(path, method)
        if spec is None or spec.trigger is None:
            return _empty(404, reason)
        query_pairs = parse_qsl(target.query, keep_blank_values=True)
        # Whitespace around a header value is not part of it (RFC 9110 5.5; Kestrel trims it):
        # "x-functions-key:  KEY " is KEY.
        key = ((grouped.get(KEY_HEADER) or [""])[0].strip(" \t")
               or dict(query_pairs).get(KEY_QUERY))
        if not self._authorised(spec, key):
            return _empty(401, f"{spec.name} is authLevel {spec.trigger.auth_level}: "
                               f"send the key in {KEY_HEADER} or ?{KEY_QUERY}=")

        rpc_http = self._rpc_http(
            method=method,
            url=f"{target.scheme}://{host_header}{path}" + (f"?{target.query}" if target.query
                                                             else ""),
            headers={k: _join(v) for k, v in grouped.items()},
            query={k: _join(v) for k, v in _grouped(query_pairs, lower=False).items()},
            route_params=route_params,
            body=raw_body,
        )
        return await self._invoke(spec, rpc_http, host_traceparent(grouped.get("traceparent")))

    def _rpc_http(
        self,
        *,
        method: str,
        url: str,
        headers: dict[str, str],
        query: dict[str, str],
        route_params: dict[str, str],
        body: bytes,
    ) -> Any:
        """RpcHttp as `ToRpcHttp` builds it, following the capabilities the worker announced."""
        p = self._runtime.protos
        http = p.RpcHttp(
            method=method,
            url=url,
            headers=headers,
            # Without the nullable-dictionary capability the host drops empty query values.
            query={k: v for k, v in query.items() if v},
            params=route_params,
        )
        if not body:
            return http
        caps = self._runtime.capabilities
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        octet = content_type.startswith(_OCTET_OR_MULTIPART)
        raw_bytes = bool(caps.get("RawHttpBodyBytes"))
        if caps.get("RpcHttpBodyOnly"):
            # PopulateBody: bytes when the worker asked for raw bytes (it does), else text.
            if octet or raw_bytes:
                http.body.CopyFrom(p.TypedData(bytes=body))
            else:
                http.body.CopyFrom(p.TypedData(string=body.decode("utf-8", "replace")))
            return http
        # PopulateBodyAndRawBody, for a worker without RpcHttpBodyOnly.
        text = body.decode("utf-8", "replace")
        if content_type == "application/json":
            http.body.CopyFrom(p.TypedData(string=text))
        elif octet:
            http.body.CopyFrom(p.TypedData(bytes=body))
        else:
            http.body.CopyFrom(p.TypedData(string=text))
        http.rawBody.CopyFrom(p.TypedData(bytes=body) if raw_bytes else p.TypedData(string=text))
        return http

    async def _invoke(self, spec: FunctionSpec, rpc_http: Any, traceparent: str) -> HostResponse:
        p = self._runtime.protos
        assert spec.trigger is not None
        invocation_id = str(uuid.uuid4())
        message = p.StreamingMessage(
            request_id=str(uuid.uuid4()),
            invocation_request=p.InvocationRequest(
                invocation_id=invocation_id,
                function_id=spec.function_id,
                input_data=[p.ParameterBinding(name=spec.trigger.param_name,
                                               data=p.TypedData(http=rpc_http))],
                trace_context=p.RpcTraceContext(trace_parent=traceparent),
            ),
        )
        envelope = _WorkerRequest("invocation_request", message, self._runtime.properties)
        timeout = self.config.function_timeout
        try:
            result = await asyncio.wait_for(
                self._runtime.worker.invocation_request(envelope), timeout
            )
        except TimeoutError:
            error = f"Timeout value of {timeout} s (host.json functionTimeout) was exceeded"
            logger.error("Executed 'Functions.%s' (Failed, Id=%s): %s",
                         spec.name, invocation_id, error)
            response = _empty(500)
            response.function, response.error = spec.name, error
            return response
        return self._to_response(spec, invocation_id, result)

    def _to_response(self, spec: FunctionSpec, invocation_id: str, result: Any) -> HostResponse:
        p = self._runtime.protos
        if result.result.status != p.StatusResult.Success:
            exc = result.result.exception
            logger.error("Executed 'Functions.%s' (Failed, Id=%s): %s\n%s",
                         spec.name, invocation_id, exc.message, exc.stack_trace)
            response = _empty(500)
            response.function = spec.name
            response.error = f"{exc.message}\n{exc.stack_trace}"
            return response
        data = result.return_value
        if data.WhichOneof("data") is None:
            # An `out` http binding instead of `$return`.
            data = next((o.data for o in result.output_data
                         if o.data.WhichOneof("data") == "http"), data)
        kind = data.WhichOneof("data")
        headers = Headers([])
        if kind == "http":
            http = data.http
            status = int(http.status_code) if http.status_code else 200
            for name, value in http.headers.items():
                headers.add_header(name, value)
            for cookie in http.cookies:
                headers.add_header("Set-Cookie", format_set_cookie(cookie))
            body = _typed_bytes(http.body) if http.HasField("body") else b""
        elif kind is None:
            status, body = 204, b""
        else:
            status, body = 200, _typed_bytes(data)
            plain = "text/plain; charset=utf-8"
            headers.add_header("Content-Type", plain if kind == "string" else
                               "application/json" if kind == "json" else
                               "application/octet-stream")
        return HostResponse(status=status, headers=headers, body=body, function=spec.name)

    # -- queue triggers --------------------------------------------------------------------------

    @property
    def queue_functions(self) -> list[FunctionSpec]:
        """The enabled functions with a queue trigger (the ones `start_queues` listens for)."""
        return self.config.queue_functions

    def start_queues(self, **kwargs: Any) -> QueuePoller:
        """Start polling the queues of every queue-triggered function (devhost.queues.QueuePoller,
        same keyword arguments, started; see there); stopped by `close()` or its own `stop()`.

        Raises devhost.queues.QueueConfigError when a function's connection or queue name cannot
        be resolved (with `strict=False` those functions are skipped and listed in `.errors`).
        """
        from devhost.queues import QueuePoller

        strict = kwargs.pop("strict", True)
        poller = QueuePoller(self, **kwargs)
        poller.start(strict=strict)
        self._pollers.append(poller)
        return poller

    def invoke_queue(self, function: str, message: QueueMessageData, *, queue_name: str = "",
                     timeout: float | None = None) -> QueueInvocationResult:
        """Invoke a queue-triggered function with `message`, as the extension's listener does;
        thread-safe. The outcome is only reported: deleting or releasing the message is the
        listener's part (devhost.queues)."""
        future = self._runtime.submit(self._invoke_queue(function, message, queue_name))
        return future.result(timeout)

    async def ainvoke_queue(self, function: str, message: QueueMessageData, *,
                            queue_name: str = "") -> QueueInvocationResult:
        """`invoke_queue` for async callers on any event loop (the work runs on the worker's)."""
        future = self._runtime.submit(self._invoke_queue(function, message, queue_name))
        return await asyncio.wrap_future(future)

    def queue_trigger_metadata(self, spec: FunctionSpec,
                               message: QueueMessageData) -> dict[str, Any]:
        """The InvocationRequest's trigger_metadata for a queue message, as the host builds it.

        The extension's binding data (QueueTriggerBinding.CreateBindingData): QueueTrigger (the
        body, when it is valid UTF-8), DequeueCount, ExpirationTime, Id, InsertionTime,
        NextVisibleTime, PopReceipt; the SDK's `sys`; then, for a body that is a JSON object, its
        top-level non-array properties (Utility.ApplyBindingData), which replace a built-in name
        they match case-insensitively, so a body `{"id": ...}` becomes the message's Id, as in
        Azure (azure-functions-python-worker#1373). Each value goes through ToRpc: strings as
        `string`; numbers, times and objects as `json` (Json.NET).
        """
        p = self._runtime.protos
        try:
            text: str | None = message.body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        data: dict[str, Any] = {}
        if text is not None:
            data["QueueTrigger"] = p.TypedData(string=text)
        data["DequeueCount"] = p.TypedData(json=json.dumps(int(message.dequeue_count)))
        data["ExpirationTime"] = p.TypedData(
            json=_dotnet_json_time(message.expiration_time, _MAX_DATETIMEOFFSET))
        data["Id"] = p.TypedData(string=message.id)
        data["InsertionTime"] = p.TypedData(json=_dotnet_json_time(message.insertion_time))
        data["NextVisibleTime"] = p.TypedData(
            json=_dotnet_json_time(message.next_visible_time, _MAX_DATETIMEOFFSET))
        data["PopReceipt"] = p.TypedData(string=message.pop_receipt)
        data["sys"] = p.TypedData(json=json.dumps({
            "MethodName": spec.name,
            "UtcNow": json.loads(_dotnet_json_time(None)),
            "RandGuid": str(uuid.uuid4()),
        }, separators=(",", ":")))
        trigger = spec.queue_trigger
        if text is not None and trigger is not None and trigger.data_type != "binary":
            for key, value in self._json_binding_data(text).items():
                existing = next((k for k in data if k.lower() == key.lower()), key)
                data[existing] = (p.TypedData(json=json.dumps(value, separators=(",", ":")))
                                  if isinstance(value, dict) else p.TypedData(string=value))
        return data

    @staticmethod
    def _json_binding_data(text: str) -> dict[str, Any]:
        stripped = text.strip()
        if not (stripped.startswith("{") and stripped.endswith("}")):
            return {}  # Utility.IsJson also accepts [...], which JObject.Parse then refuses
        try:
            parsed = json.loads(stripped)
        except ValueError:
            return {}
        if not isinstance(parsed, dict):
            return {}
        result = {}
        for key, value in parsed.items():
            if isinstance(value, list):
                continue
            converted = _binding_data_value(value)
            if converted is not None:
                result[_utf8(key)] = _utf8(converted) if isinstance(converted, str) else converted
        return result

    async def _invoke_queue(self, function: str, message: QueueMessageData,
                            queue_name: str) -> QueueInvocationResult:
        if self._closed:
            raise RuntimeError("this WorkerHost is closed")
        spec = self.config.functions.get(function)
        if spec is None or spec.queue_trigger is None:
            raise ValueError(f"{function!r} is not a queue-triggered function of this app")
        p = self._runtime.protos
        trigger = spec.queue_trigger
        if trigger.data_type == "binary":
            data = p.TypedData(bytes=message.body)
        else:
            # The trigger parameter's type is string (no dataType): the body as UTF-8 text.
            data = p.TypedData(string=message.body.decode("utf-8", "replace"))
        invocation_id = str(uuid.uuid4())
        request = p.StreamingMessage(
            request_id=str(uuid.uuid4()),
            invocation_request=p.InvocationRequest(
                invocation_id=invocation_id,
                function_id=spec.function_id,
                input_data=[p.ParameterBinding(name=trigger.param_name, data=data)],
                trigger_metadata=self.queue_trigger_metadata(spec, message),
                trace_context=p.RpcTraceContext(trace_parent=host_traceparent(None)),
            ),
        )
        queue = queue_name or trigger.queue_name
        logger.info("Executing 'Functions.%s' (Reason='New queue message detected on '%s'.', "
                    "Id=%s)", spec.name, queue, invocation_id)
        logger.debug("Trigger Details: MessageId: %s, DequeueCount: %d, InsertedOn: %s",
                     message.id, message.dequeue_count, message.insertion_time)
        envelope = _WorkerRequest("invocation_request", request, self._runtime.properties)
        timeout = self.config.function_timeout
        began = time.perf_counter()
        try:
            response = await asyncio.wait_for(
                self._runtime.worker.invocation_request(envelope), timeout
            )
        except TimeoutError:
            error = f"Timeout value of {timeout} s (host.json functionTimeout) was exceeded"
            result = QueueInvocationResult(spec.name, invocation_id, False, error)
        else:
            if response.result.status == p.StatusResult.Success:
                result = QueueInvocationResult(spec.name, invocation_id, True)
            else:
                exc = response.result.exception
                result = QueueInvocationResult(spec.name, invocation_id, False,
                                               f"{exc.message}\n{exc.stack_trace}")
        result.elapsed = time.perf_counter() - began
        duration = f"Duration={result.elapsed * 1000:.0f}ms"
        if result.succeeded:
            logger.info("Executed 'Functions.%s' (Succeeded, Id=%s, %s)", spec.name,
                        invocation_id, duration)
        else:
            logger.error("Executed 'Functions.%s' (Failed, Id=%s, %s): %s", spec.name,
                         invocation_id, duration, result.error)
        return result

    def _splash(self) -> HostResponse:
        """GET / answers 200, like the host's "Your Functions app is up and running" page."""
        body = b"<html><body>Your Functions app is up and running (devhost).</body></html>"
        return HostResponse(
            status=200,
            headers=Headers([("Content-Type", "text/html; charset=utf-8")]),
            body=body,
        )


async def close_app_clients() -> None:
    """shared.outbound.twilio_client.close and shared.records.storage.close, for an app that has
    them."""
    import sys

    for name in ("shared.outbound.twilio_client", "shared.records.storage"):
        module = sys.modules.get(name)
        close = getattr(module, "close", None)
        if close is not None:
            await close()
