"""The worker host over HTTP on loopback: `python -m devhost.server` stands in for `func start`.

Core Tools cannot be installed everywhere (its npm package downloads the host from a CDN), so
this serves the same URLs on the same port (7071) for curl, the webhook simulator and ngrok. It
uses only the standard library's ThreadingHTTPServer: every request goes through one WorkerHost,
whose worker runs on its own event loop, as in a real worker process.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit
from wsgiref.headers import Headers

from devhost import settings as local_settings
from devhost.appconfig import AppConfigError
from devhost.worker_host import KEY_QUERY, FunctionLoadError, HostResponse, WorkerHost

logger = logging.getLogger("devhost.server")

DEFAULT_BIND = "127.0.0.1"
# Kestrel limits a request body to about 30 MB; a webhook is a few kilobytes.
MAX_BODY = 30_000_000
# Hop-by-hop or recomputed here; a function's own values for these are not forwarded.
_SKIPPED_RESPONSE_HEADERS = {"content-length", "transfer-encoding", "connection", "date", "server"}


def _redacted(path: str) -> str:
    """A request path for the log: a function key in `?code=` must not end up in a terminal."""
    parts = urlsplit(path)
    if not parts.query:
        return parts.path
    query = [(k, "***" if k == KEY_QUERY else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return f"{parts.path}?{urlencode(query, safe='*')}"


class _Handler(BaseHTTPRequestHandler):
    """Hands every request, whatever its method, to the WorkerHost."""

    protocol_version = "HTTP/1.1"
    server_version = "devhost"
    host: WorkerHost  # set on the subclass built by serve()

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self._send(HostResponse(400, _headers([("Content-Length", "0")])), head=False)
            return
        if body is None:
            self.close_connection = True
            self._send(HostResponse(413, _headers([("Content-Length", "0")])), head=False)
            return
        bind_host, port = self.server.server_address[:2]
        try:
            response = self.host.request(
                self.command,
                self.path,
                headers=list(self.headers.items()),
                body=body,
                base_url=f"http://{bind_host}:{port}",
            )
        except Exception:
            logger.exception("devhost failed on %s %s", self.command, _redacted(self.path))
            response = HostResponse(500, _headers([("Content-Length", "0")]))
        self._send(response, head=self.command == "HEAD")
        where = f" {response.function}" if response.function else ""
        reason = response.headers.get("X-Devhost-Reason")
        logger.info("%s %s -> %d%s (%.1f ms)%s", self.command, _redacted(self.path),
                    response.status, where, response.elapsed * 1000,
                    f" [{reason}]" if reason else "")

    def _send(self, response: HostResponse, head: bool) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() not in _SKIPPED_RESPONSE_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if not head:
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: object) -> None:
        """The access log is written by _handle (with the key redacted); silence the default."""

    def log_error(self, format: str, *args: object) -> None:
        logger.warning("%s", format % args)


def _headers(pairs: Iterable[tuple[str, str]]) -> Headers:
    return Headers(list(pairs))


class HostHTTPServer(ThreadingHTTPServer):
    """socketserver's listen backlog is 5: a burst of callers connecting at once (Twilio fanning
    out webhooks, a batch of make_calls) would get resets. Kestrel, Azure's, listens with 512."""

    request_queue_size = 512
    daemon_threads = True


@dataclass
class ServedHost:
    """A WorkerHost served over HTTP on a background thread; `url` is its base URL."""

    host: WorkerHost
    server: HostHTTPServer
    thread: threading.Thread
    owns_host: bool = True  # close() closes the WorkerHost too

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.server.server_address[0]}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        if self.owns_host:
            self.host.close()

    def __enter__(self) -> ServedHost:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve(
    host: WorkerHost,
    *,
    bind: str = DEFAULT_BIND,
    port: int = local_settings.DEFAULT_PORT,
    owns_host: bool = True,
) -> ServedHost:
    """Serve `host` on bind:port (port 0 picks a free one) from a daemon thread."""
    handler = type("Handler", (_Handler,), {"host": host})
    server = HostHTTPServer((bind, port), handler)
    # A short poll interval makes shutdown() quick (tests start and stop many servers).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="devhost-http",
        daemon=True,
    )
    thread.start()
    return ServedHost(host=host, server=server, thread=thread, owns_host=owns_host)


def describe_functions(host: WorkerHost, base_url: str) -> list[str]:
    """The `Functions:` listing `func start` prints: name, methods and URL."""
    lines = []
    for name, spec in sorted(host.functions.items()):
        if spec.trigger is None:
            lines.append(f"\t{name}: (not an HTTP trigger: loaded, not routed)")
            continue
        methods = ",".join(sorted(spec.trigger.methods)) if spec.trigger.methods else "ALL"
        lines.append(f"\t{name}: [{methods}] {host.url_for(name, base_url)}")
    return lines


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devhost.server",
        description="Serve the function app through the real Azure Functions Python worker, "
        "without Core Tools.",
    )
    parser.add_argument("--app-root", type=Path, default=Path.cwd(),
                        help="the function app folder (default: the current directory)")
    parser.add_argument("--bind", default=DEFAULT_BIND,
                        help=f"address to listen on (default {DEFAULT_BIND}, loopback only)")
    parser.add_argument("--port", type=int, default=None,
                        help="port (default: Host.LocalHttpPort in local.settings.json, else "
                        f"{local_settings.DEFAULT_PORT})")
    parser.add_argument("--host-key", action="append", default=[], metavar="KEY",
                        help="require this key (x-functions-key header or ?code=) for authLevel "
                        "function, as Azure does; repeatable. Default: no keys, like func start")
    parser.add_argument("--no-settings", action="store_true",
                        help="do not load local.settings.json into the environment")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the worker's debug logs")
    return parser.parse_args(argv)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="[%(asctime)s] %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    root = args.app_root.resolve()
    port = args.port
    try:
        found = None if args.no_settings else local_settings.read(root)
        if found is not None:
            applied, kept = local_settings.apply(found)
            print(f"Loaded {len(applied)} settings from {found.path.name}"
                  + (f" ({len(kept)} already set in the environment were kept)" if kept else ""))
            port = found.port if port is None else port
        elif not args.no_settings:
            print(local_settings.missing_message(root))
        host = WorkerHost.start(root, host_keys=args.host_key)
    except (AppConfigError, FunctionLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    port = local_settings.DEFAULT_PORT if port is None else port
    try:
        served = serve(host, bind=args.bind, port=port)
    except OSError as error:
        print(f"error: cannot listen on {args.bind}:{port}: {error.strerror}; "
              "is another host running? Try --port.", file=sys.stderr)
        return 1
    print(f"\nFunctions (loaded through the Python worker in {host.load_seconds:.2f} s):\n")
    print("\n".join(describe_functions(host, served.url)))
    if args.host_key:
        print("\nauthLevel function requires one of the --host-key keys.")
    print(f"\nListening on {served.url}. Press Ctrl+C to stop.", flush=True)
    signal.signal(signal.SIGTERM, _stop)  # a process manager's stop is a Ctrl+C too
    try:
        served.thread.join()
    except KeyboardInterrupt:
        print("\nStopping.")
    finally:
        served.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
