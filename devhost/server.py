"""The worker host over HTTP on loopback: `python -m devhost.server` stands in for `func start`.

Core Tools cannot be installed everywhere (its npm package downloads the host from a CDN), so
this serves the same URLs on the same port (7071) for curl, the webhook simulator and ngrok. It
uses only the standard library's ThreadingHTTPServer: every request goes through one WorkerHost,
whose worker runs on its own event loop, as in a real worker process.

A tunnel puts it on the internet, so it refuses what Kestrel refuses in front of Azure's host
(malformed request lines, headers, Host values and body framing; bodies over the limit), times
out silent connections and caps how many are served at once (devhost/README.md lists each rule).
"""

from __future__ import annotations

import argparse
import contextlib
import email.errors
import io
import ipaddress
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from wsgiref.headers import Headers

from devhost import settings as local_settings
from devhost.appconfig import AppConfigError
from devhost.queues import STOP_TIMEOUT
from devhost.worker_host import (
    KEY_HEADER,
    KEY_QUERY,
    FunctionLoadError,
    HostResponse,
    WorkerHost,
)

logger = logging.getLogger("devhost.server")

# A line in the header block that is not a header ("Host : x", no colon): the parser stops
# there and drops every header after it.
_HEADER_SYNTAX_DEFECTS = (email.errors.MissingHeaderBodySeparatorDefect,
                          email.errors.InvalidHeaderDefect)

DEFAULT_BIND = "127.0.0.1"
# Kestrel limits a request body to about 30 MB; a webhook is a few kilobytes.
MAX_BODY = 30_000_000
# Seconds a connection may go without sending a byte while its request line, headers or body are
# incomplete (then 408 and close), or sit idle between keep-alive requests (then a quiet close).
# Kestrel allows 30 s for the headers. It is a per-read idle limit, not a total: see below.
REQUEST_TIMEOUT = 30.0
# Seconds from a request's first byte to the end of its body, however steadily the bytes come
# (then 408 and close). Without it a client trickling a byte every few seconds (slowloris) kept
# its connection, and 128 such clients every connection slot, without end. A webhook or an API
# call is a few kilobytes; Kestrel's own bounds are 30 s for the headers and a minimum body rate.
REQUEST_TIME_LIMIT = 30.0
# Connections served at once, a thread each. One more is answered 503 at once and closed (not
# queued: a caller learns it now rather than after a timeout). Above the benchmark's bursts of 100.
MAX_CONNECTIONS = 128
# Hop-by-hop or recomputed here; a function's own values for these are not forwarded.
_SKIPPED_RESPONSE_HEADERS = {"content-length", "transfer-encoding", "connection", "date", "server"}
_MAX_REQUEST_LINE = 65536  # the standard library's own limit
_MAX_CHUNK_SIZE_LINE = 4096  # hex digits and extensions; longer is an attack, not a webhook
_MAX_TRAILERS = 32 * 1024  # Kestrel's limit for all request headers, applied to trailers
# chunk-size [chunk-ext] CRLF (RFC 9112 7.1): hex digits only, so no sign, "0x" or "_" that
# int(..., 16) would accept; "-1" once made the old reader read to the end of the stream.
_CHUNK_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]+)(;[^\r\n]*)?\r\n")
_DIGITS = re.compile(r"[0-9]+")
# A Host name as Kestrel accepts it (the set http.sys allows): letters, digits and -._~!$&'()
# (RFC 3986 reg-name less "*+,;=" and percent-escapes). A dotted IPv4 address is one too.
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~!$&'()]+")
# What a field value may not hold (RFC 9110 5.5): controls other than HTAB, DEL, and the CR LF
# of an obsolete line folding, which the standard library keeps inside the value.
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_REFUSAL_TIMEOUT = 1.0  # seconds to write a 503 from the accept loop
_SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n"
    b"Retry-After: 1\r\nX-Devhost-Reason: too many open connections\r\n\r\n"
)


def _redacted(path: str) -> str:
    """A request path for the log: no value of its query, nor an escape sequence or line break
    from the request line (written escaped, `\\x1b`).

    A GET webhook carries all of Twilio's fields in the query (AccountSid, CallToken, a text's
    Body, From and To) and `?code=` a function key: the names are kept (they say what came),
    each non-empty value becomes `***`, a phone number `+1415*****23` as the app logs one.
    """
    parts = urlsplit(path)
    # A number in the path (/api/calls/+14155550123, a mistaken lookup) is masked too, with its
    # + or without.
    route = _NUMBER_IN_PATH.sub(lambda m: m[1] + _masked_value("+" + m[2])[1:], parts.path)
    route = _BARE_NUMBER_IN_PATH.sub(lambda m: _masked_value("+" + m[0])[1:], route)
    if not parts.query:
        return _printable(route)
    # A name is kept unless it is a number (?+14155550123=1 is no field of Twilio's).
    query = [(_masked_value(k) if _PHONE_NUMBER.fullmatch(k) else k,
              _masked_value(v) if k != KEY_QUERY else "***")
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return _printable(f"{route}?{urlencode(query, safe='*')}")


# A whole phone number (E.164 has at most 15 digits). Shorter digit strings (a PIN a <Gather>
# collected, a code) are not numbers whose masked form says anything: they become *** too.
_PHONE_NUMBER = re.compile(r"\+?[0-9]{10,15}")
# The same in a path, raw or escaped (%2B): the masked form keeps the prefix as written.
_NUMBER_IN_PATH = re.compile(r"(\+|%2[bB])([0-9]{7,15})(?![0-9])")
# Without its +: a run of 10 to 15 digits on its own (not inside a SID or an id, BC2026...).
_BARE_NUMBER_IN_PATH = re.compile(r"(?<![0-9A-Za-z])[0-9]{10,15}(?![0-9A-Za-z])")


def _masked_value(value: str) -> str:
    """A query value for the log: a phone number masked as the app logs one, +1415*****00;
    any other value `***` ("" stays ""). (The app's shared.common.redact is not used: the local host
    serves any app root.)"""
    if not value:
        return value
    if not _PHONE_NUMBER.fullmatch(value):
        return "***"
    return value[:5] + "*" * (len(value) - 7) + value[-2:]


_QUERY_IN_TEXT = re.compile(r"\?[^\s'\"()]+")


def _printable(text: str) -> str:
    # http.server passes control characters of the request line through; the app's own
    # shared.common.logs is not used here, as the local host serves any app root (fixtures too).
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def valid_host(value: str) -> bool:
    """Whether `value` (OWS already stripped) is `uri-host [":" port]` as Kestrel accepts it.

    The Host header becomes `req.url`, which webhook signatures cover and which functions put
    in replies; `myapp.example.net/api/sms_url#` or `a[` must not get that far. A name, or an
    IPv6 literal in brackets (no zone: Kestrel refuses "%"), then an optional port of digits.
    """
    if value.startswith("["):
        literal, bracket, rest = value[1:].partition("]")
        if not bracket or "%" in literal:
            return False
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
    else:
        name, colon, port = value.partition(":")
        if not _REG_NAME.fullmatch(name):
            return False
        rest = colon + port
    return not rest or (rest[0] == ":" and _DIGITS.fullmatch(rest[1:]) is not None)


def host_name(value: str) -> str:
    """The name a valid Host header gives (no port, no brackets, lower case, no final dot)."""
    if value.startswith("["):
        return value[1:].partition("]")[0].lower()
    return value.partition(":")[0].lower().rstrip(".")


def answers_to(name: str, names: frozenset[str]) -> bool:
    """Whether this host serves requests that name `name` in their Host header: an IP address,
    `localhost` (and its subdomains, which browsers resolve to loopback themselves), or one of
    `names` (PUBLIC_BASE_URL's host, WEBSITE_HOSTNAME's, --allow-host).

    A DNS-rebinding page (a site whose name is re-pointed at 127.0.0.1 after it loaded) reaches
    the port same-origin, so neither CORS nor Sec-Fetch-Site keeps it from reading records or
    calling make_call on an unkeyed host; its requests carry its own domain name, never an
    address, in Host. Kestrel's host filtering (AllowedHosts) is the Functions host's equivalent;
    `func start` does not apply it."""
    if name == "localhost" or name.endswith(".localhost") or name in names:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _peer(address: Any) -> str:
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)


class _Refused(Exception):
    """A request the host answers itself (400, 413), without the worker. The connection closes
    after it: what the client sent next cannot be trusted to start a request."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _DeadlineReader(io.RawIOBase):
    """The connection's reads, each bounded by the socket timeout and by what is left of the
    request's time limit (`_Handler._deadline`); the first byte of a request starts that clock.

    The standard library's buffered reader makes as many reads as one readline() needs, so a
    total cannot be enforced around its calls: it is enforced here, below the buffer.
    """

    def __init__(self, handler: _Handler) -> None:
        super().__init__()
        self._handler = handler
        self._sock: socket.socket = handler.connection

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        handler = self._handler
        timeout = handler.timeout
        by_deadline = False
        if handler._deadline is not None:
            remaining = handler._deadline - time.monotonic()
            if remaining <= 0:
                handler._over_time = True
                raise TimeoutError("the request's time limit has passed")
            if timeout is None or remaining < timeout:
                timeout, by_deadline = remaining, True
        self._sock.settimeout(timeout)
        try:
            count = self._sock.recv_into(buffer)
        except TimeoutError:
            handler._over_time = by_deadline
            raise
        finally:
            self._sock.settimeout(handler.timeout)  # writes keep the per-operation timeout
        if count:
            handler._start_clock()
        return count


class _Handler(BaseHTTPRequestHandler):
    """Hands every request, whatever its method, to the WorkerHost, after the checks the
    Functions host's Kestrel makes first (request line, Host, framing, body size, timeouts)."""

    protocol_version = "HTTP/1.1"
    server_version = "devhost"
    # Not the stdlib's "HTTP/0.9": its error replies to a malformed request line would then
    # have no status line at all.
    default_request_version = "HTTP/1.0"
    host: WorkerHost  # set on the subclass built by serve()
    timeout: float | None = REQUEST_TIMEOUT  # socket timeout, applied by setup(); serve() sets it
    request_time_limit: float | None = REQUEST_TIME_LIMIT  # serve() sets it
    max_body: int = MAX_BODY
    # Host names served besides addresses and localhost (answers_to); None: any (serve()'s).
    host_names: frozenset[str] | None = None

    def setup(self) -> None:
        super().setup()
        self._requests = 0  # request lines read on this connection
        self._awaiting_request_line = True
        self._response_started = False
        self._expect_continue = False
        self._deadline: float | None = None  # when the request being read runs out of time
        self._clock_armed = False  # the next byte read starts a request's clock
        self._over_time = False  # the last timeout was the time limit's, not silence
        self.rfile = io.BufferedReader(_DeadlineReader(self), io.DEFAULT_BUFFER_SIZE)

    def _start_clock(self) -> None:
        """A request's first byte is here (or was already buffered): its time limit starts."""
        if self._clock_armed:
            self._clock_armed = False
            if self.request_time_limit is not None:
                self._deadline = time.monotonic() + self.request_time_limit

    def _stop_clock(self) -> None:
        """The request is read: the function's own time is functionTimeout's business."""
        self._clock_armed = False
        self._deadline = None

    # -- one request -----------------------------------------------------------------------------

    def handle_one_request(self) -> None:
        """The standard library's step, but a timeout is answered as Kestrel does: 408 and close
        for a request that stalled, a quiet close for a keep-alive connection that went idle."""
        self._awaiting_request_line = True
        self._response_started = False
        self._expect_continue = False
        self._over_time = False
        self._deadline = None
        self._clock_armed = True
        self.requestline = ""  # send_response() logs it, even for a request never read
        try:
            self.raw_requestline = self.rfile.readline(_MAX_REQUEST_LINE + 1)
            self._awaiting_request_line = False
            if not self.raw_requestline:
                self.close_connection = True
                return
            self._start_clock()  # a pipelined request came out of the buffer, without a read
            self._requests += 1
            if len(self.raw_requestline) > _MAX_REQUEST_LINE:
                self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
                self._reject(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
                return
            if not self.parse_request():
                return
            method = getattr(self, f"do_{self.command}", None)
            if method is None:
                self._reject(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {self.command!a}")
                return
            method()
            self.wfile.flush()
        except TimeoutError:
            self._timed_out()

    def _timed_out(self) -> None:
        self.close_connection = True
        peer = _peer(self.client_address)
        if self._response_started:
            logger.debug("%s stopped reading its response for %s s: connection closed",
                         peer, self.timeout)
            return
        if self._awaiting_request_line and self._requests and self._deadline is None:
            logger.debug("%s idle for %s s after a request: connection closed", peer, self.timeout)
            return
        if self._over_time:
            logger.info("%s sent no complete request within the %s s limit for one: 408, "
                        "connection closed", peer, self.request_time_limit)
        else:
            logger.info("%s sent no complete request within %s s of silence: 408, connection "
                        "closed", peer, self.timeout)
        self.request_version = "HTTP/1.1"  # it may never have been read
        with contextlib.suppress(OSError):  # the client may be gone as well
            self._send(HostResponse(408, _headers([("Content-Length", "0")])), head=False)

    def parse_request(self) -> bool:
        if len(self.raw_requestline.split()) == 2:
            # HTTP/0.9 ("GET /"): the standard library would wait for headers it never gets and
            # answer without a status line; Kestrel refuses the request line.
            self.command, self.path = (w.decode("latin-1") for w in self.raw_requestline.split())
            self.request_version = "HTTP/1.0"
            self._reject(400, "HTTP/0.9 request line")
            return False
        if not super().parse_request():
            return False
        problem = self._header_problem()
        if problem:
            self._reject(400, problem)
            return False
        unserved = self._unserved_name()
        if unserved:
            # A setup's mistake, not a hostile client's: said in the body too (as Kestrel's host
            # filtering does), for the browser or script that met it.
            self._reject(400, unserved, body=True)
            return False
        return True

    def handle_expect_100(self) -> bool:
        """100 Continue is sent when the body is about to be read (as Kestrel does), so a request
        refused for its Host or its size is refused before the client sends the body."""
        self._expect_continue = True
        return True

    def _header_problem(self) -> str | None:
        """Why the header block gets 400 (RFC 9112 3.2, as Kestrel applies it), or None."""
        # The email parser reading the header block also notes what is wrong with a MIME body it
        # has not seen (multipart without its parts): that is the function's to judge (make_call
        # answers 415 JSON), not the header block's.
        if any(isinstance(d, _HEADER_SYNTAX_DEFECTS) for d in self.headers.defects):
            return "malformed header line"
        for name, value in self.headers.items():
            if _FORBIDDEN_IN_VALUE.search(value):
                return f"control character or line folding in {name!a}"
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:
            return "more than one Host header"
        requires_host = self.request_version != "HTTP/1.0"
        host = hosts[0].strip(" \t") if hosts else ""
        if not host:
            # HTTP/1.0 may omit it (the bind address stands in); HTTP/1.1 must send one. Kestrel
            # lets an empty one through; here it would make req.url "http:///api/...".
            return ("HTTP/1.1 requires a non-empty Host header" if requires_host else None)
        if not valid_host(host):
            return f"invalid Host header {host!a}"
        return None

    def _unserved_name(self) -> str | None:
        """Why a (valid) Host names no name this host answers (answers_to), or None."""
        name = host_name((self.headers.get("Host") or "").strip(" \t"))
        if self.host_names is None or not name or answers_to(name, self.host_names):
            return None
        named = ", ".join(sorted(self.host_names))[:300]
        return (f"the local host does not answer the name {name[:80]!a}: it answers addresses, "
                "localhost" + (f" and {named}" if named else "") + " (PUBLIC_BASE_URL's host "
                "and --allow-host names, as read at start-up): restart it with PUBLIC_BASE_URL "
                f"or --allow-host {name[:80]} (docs/local.md)")

    def _read_body(self) -> bytes:
        """The body, framed as RFC 9112 section 6 says; raises _Refused (400, 413)."""
        codings = self.headers.get_all("Transfer-Encoding")
        lengths = self.headers.get_all("Content-Length")
        if codings is not None:
            if lengths is not None:
                # Two framings: a proxy in front may have used the other one (smuggling).
                raise _Refused(400, "both Transfer-Encoding and Content-Length")
            names = [c.strip(" \t").lower() for c in ",".join(codings).split(",")]
            if names[-1] != "chunked" or names.count("chunked") != 1:
                raise _Refused(400, "the final transfer coding is not chunked")
            self._send_continue()
            return self._read_chunked()
        if lengths is None:
            return b""
        values = {v.strip(" \t") for v in lengths}
        value = values.pop()
        if values or not _DIGITS.fullmatch(value):
            raise _Refused(400, "invalid Content-Length")
        length = int(value)
        if length > self.max_body:
            raise _Refused(413, f"body over {self.max_body} bytes")
        if length == 0:
            return b""
        self._send_continue()
        body = self.rfile.read(length)
        if len(body) < length:
            raise _Refused(400, "the body ended before Content-Length bytes")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            match = _CHUNK_SIZE_LINE.fullmatch(self.rfile.readline(_MAX_CHUNK_SIZE_LINE + 1))
            if match is None:
                raise _Refused(400, "invalid chunk size line")
            size = int(match[1], 16)
            if size == 0:
                break
            total += size
            if total > self.max_body:
                raise _Refused(413, f"body over {self.max_body} bytes")
            data = self.rfile.read(size)
            if len(data) < size:
                raise _Refused(400, "the body ended inside a chunk")
            if self.rfile.read(2) != b"\r\n":
                raise _Refused(400, "a chunk not followed by CRLF")
            chunks.append(data)
        trailers = 0
        while True:
            line = self.rfile.readline(_MAX_TRAILERS + 1)
            if line == b"\r\n":
                return b"".join(chunks)
            trailers += len(line)
            if not line.endswith(b"\r\n") or trailers > _MAX_TRAILERS:
                raise _Refused(400, "invalid or oversized trailers")

    def _send_continue(self) -> None:
        if self._expect_continue:
            self._expect_continue = False
            self.send_response_only(HTTPStatus.CONTINUE)
            self.end_headers()

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except _Refused as refused:
            self._reject(refused.status, refused.reason)
            return
        self._stop_clock()
        bind_host, port = self.server.server_address[:2]
        headers = []
        for name, value in self.headers.items():
            if name.lower() == "host":
                value = value.strip(" \t")
                if not value:
                    continue  # HTTP/1.0 without a host: the WorkerHost puts the bind address
            headers.append((name, value))
        try:
            response = self.host.request(
                self.command,
                self.path,
                headers=headers,
                body=body,
                base_url=f"http://{bind_host}:{port}",
            )
        except Exception:
            logger.exception("devhost failed on %s %s", self.command, _redacted(self.path))
            response = HostResponse(500, _headers([("Content-Length", "0")]))
        # Logged before sending: a client that has left still shows up in the access log.
        where = f" {response.function}" if response.function else ""
        reason = response.headers.get("X-Devhost-Reason")
        logger.info("%s %s -> %d%s (%.1f ms)%s", self.command, _redacted(self.path),
                    response.status, where, response.elapsed * 1000,
                    f" [{reason}]" if reason else "")
        self._send(response, head=self.command == "HEAD")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """The standard library's own refusals (a request line it cannot parse, a header block
        too long or with too many lines) answered as the host's others are: an empty body and
        the reason in X-Devhost-Reason, not its HTML page, which echoed the request line. Its
        log line (the request line redacted, as every log line here) says what it was."""
        self.log_error("code %d, message %s", code, message)
        self._reject(code, HTTPStatus(code).phrase.lower(), logged=True)

    def _reject(self, status: int, reason: str, logged: bool = False, body: bool = False
                ) -> None:
        """Answer `status` and close, with an empty body (or, with `body`, the reason as plain
        text); `reason` must be ASCII (use !a)."""
        self.close_connection = True
        if not logged:
            # A request line refused unread (414) has no path yet.
            logger.info("%s %s -> %d [%s]", self.command or "-",
                        _redacted(getattr(self, "path", "") or ""), status, reason)
        text = (reason + "\n").encode("ascii") if body else b""
        headers = [("X-Devhost-Reason", reason)]
        if body:
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        self._send(HostResponse(status, _headers(headers), text),
                   head=body and self.command == "HEAD")

    def _send(self, response: HostResponse, head: bool) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() not in _SKIPPED_RESPONSE_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(response.body)

    def send_response_only(self, code: int, message: str | None = None) -> None:
        if code >= 200:
            self._response_started = True  # a timeout from here on gets no 408
        super().send_response_only(code, message)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: object) -> None:
        """The access log is written by _handle (with the key redacted); silence the default."""

    def log_error(self, format: str, *args: object) -> None:
        # http.server's own refusals quote the request line ("Bad request syntax ('GET/x?a=b')"):
        # its query is hidden as the access log hides it, control characters escaped.
        logger.warning("%s", _printable(_QUERY_IN_TEXT.sub("?***", format % args)))


def _headers(pairs: Iterable[tuple[str, str]]) -> Headers:
    return Headers(list(pairs))


class HostHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` at once.

    socketserver's listen backlog is 5: a burst of callers connecting at once (Twilio fanning
    out webhooks, a batch of make_calls) would get resets. Kestrel, Azure's, listens with 512.
    Without a cap, slow clients held a thread each without end; beyond it a connection gets a
    503 from the accept loop, which never blocks (so shutdown() stays quick).
    """

    request_queue_size = 512
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self._open = 0
        self._open_lock = threading.Lock()
        self._last_refusal_warning = float("-inf")
        super().__init__(address, handler)

    @property
    def open_connections(self) -> int:
        """Connections being served now (each holds a handler thread)."""
        with self._open_lock:
            return self._open

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            admitted = self._open < self.max_connections
            if admitted:
                self._open += 1
        if not admitted:
            self._refuse(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()  # no thread started to release it
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._open_lock:
            self._open -= 1

    def _refuse(self, request: socket.socket, client_address: Any) -> None:
        now = time.monotonic()
        warn = now - self._last_refusal_warning >= 10  # one warning per burst, not per socket
        if warn:
            self._last_refusal_warning = now
        logger.log(logging.WARNING if warn else logging.DEBUG,
                   "%d connections open, the limit: %s refused with 503",
                   self.max_connections, _peer(client_address))
        try:
            request.settimeout(_REFUSAL_TIMEOUT)
            request.sendall(_SERVICE_UNAVAILABLE)
            request.shutdown(socket.SHUT_WR)
            # Read what has arrived: closing with unread input sends a reset, which can destroy
            # the 503 before the client reads it. Non-blocking, so the accept loop never waits.
            request.setblocking(False)
            for _ in range(16):
                if not request.recv(65536):
                    break
        except OSError:
            pass
        finally:
            self.close_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that disconnects mid-request is routine, not a traceback (the default
        printed one per dropped connection)."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("%s disconnected (%s)", _peer(client_address), type(error).__name__)
            return
        logger.error("devhost failed on the connection from %s", _peer(client_address),
                     exc_info=True)


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
    timeout: float | None = REQUEST_TIMEOUT,
    request_time_limit: float | None = REQUEST_TIME_LIMIT,
    max_connections: int = MAX_CONNECTIONS,
    max_body: int = MAX_BODY,
    host_names: Iterable[str] | None = None,
) -> ServedHost:
    """Serve `host` on bind:port (port 0 picks a free one) from a daemon thread.

    `timeout`: seconds of silence allowed on a connection (see REQUEST_TIMEOUT; None waits
    forever); `request_time_limit`: seconds from a request's first byte to its body's end (see
    REQUEST_TIME_LIMIT; None: no total); `max_connections`: connections served at once, more
    get 503; `max_body`: bytes. Tests pass small values to reach the limits quickly.
    `host_names`: the names, besides addresses and localhost, a request's Host may give
    (answers_to; any other gets 400); None: any name.
    """
    names = None if host_names is None else frozenset(n.lower().rstrip(".") for n in host_names)
    handler = type("Handler", (_Handler,), {"host": host, "timeout": timeout,
                                            "request_time_limit": request_time_limit,
                                            "max_body": max_body, "host_names": names})
    server = HostHTTPServer((bind, port), handler, max_connections=max_connections)
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
        if spec.queue_trigger is not None:
            lines.append(f"\t{name}: queueTrigger {spec.queue_trigger.queue_name}")
            continue
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
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        type=_allowed_host,
                        help="also answer requests whose Host is NAME (a machine name on your "
                        "network, a tunnel's when PUBLIC_BASE_URL is not set); repeatable. "
                        "Default: addresses, localhost and PUBLIC_BASE_URL's host only")
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, metavar="N",
                        help="connections served at once; more get 503 "
                        f"(default {MAX_CONNECTIONS})")
    parser.add_argument("--request-time-limit", type=_seconds, default=REQUEST_TIME_LIMIT,
                        metavar="SECONDS",
                        help="seconds a request may take from its first byte to the end of its "
                        "body, however steadily it trickles in; then 408 and the connection is "
                        f"closed (1 to 3600, default {REQUEST_TIME_LIMIT:g})")
    parser.add_argument("--no-settings", action="store_true",
                        help="do not load local.settings.json into the environment")
    parser.add_argument("--twilio-api", type=_twilio_api_url, metavar="URL",
                        help="send the REST requests (make_call, send_sms) to a local stand-in "
                        "of Twilio's API at this loopback URL instead of https://api.twilio.com; "
                        "start one with python -m devhost.standin")
    parser.add_argument("--no-queues", action="store_true",
                        help="do not poll the queues of queue-triggered functions (by default "
                        "they run as under func start, on their connection setting's storage)")
    parser.add_argument("--processing-visibility", type=_seconds, default=None, metavar="SECONDS",
                        help="how long a message stays hidden while it runs (default 600, the "
                        "queue extension's); shorter, a killed host's messages come back sooner: "
                        "for crash tests and the benchmark, not for normal runs")
    parser.add_argument("--count-storage", type=Path, metavar="FILE",
                        help="count every storage operation (the app's and the queue "
                        "listener's) and keep the totals in FILE as JSON (devhost.storage_ops; "
                        "for the broadcast benchmark)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the worker's debug logs")
    return parser.parse_args(argv)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError("must be a number of seconds from 1 to 3600")
    return seconds


def start_queues(host: WorkerHost, processing_visibility: float | None = None) -> Any:
    """Start the queue listeners of `host` (devhost.queues), printing the one start-up line that
    names them, and, as the host does, that a function is in error when its trigger cannot
    listen (e.g. no AzureWebJobsStorage); None when no listener runs."""
    options = (
        {} if processing_visibility is None
        else {"processing_visibility_timeout": processing_visibility}
    )
    try:
        poller = host.start_queues(strict=False, **options)
    except Exception as error:  # e.g. azure-storage-queue not installed: HTTP still serves
        print(f"Queue triggers not started: {error}", file=sys.stderr)
        return None
    for name, reason in poller.errors.items():
        # The host's words: the function is in error, the rest of the app runs.
        print(f"The '{name}' function is in error: {reason}", file=sys.stderr, flush=True)
    if not poller.listeners:
        return None
    settings = sorted({c.connection_setting for c in poller.listeners})
    print(f"\nQueue triggers (storage from {', '.join(settings)}): {poller.describe()}")
    return poller


def _allowed_host(value: str) -> str:
    """--allow-host: a host name as a Host header gives it (a port is ignored; a non-ASCII name
    is taken in the ASCII form browsers send), never a URL or a pattern, which would never match
    and leave every request with that Host refused without a word."""
    name = value.strip()
    if "://" in name or "/" in name:
        raise argparse.ArgumentTypeError(
            f"{value!r} is a URL: give its host name alone, like abc.ngrok-free.app")
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a host name") from None
    if not name or not valid_host(name):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a host name (letters, digits, - and .; no * patterns)")
    return host_name(name)


def _twilio_api_url(value: str) -> str:
    """--twilio-api: a loopback URL only, since the REST client sends the Twilio credentials."""
    from devhost.standin import loopback_api_url

    try:
        return loopback_api_url(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def stand_in_notice(url: str) -> str:
    """The start-up line of a host whose REST requests go to a stand-in of Twilio's API."""
    return (
        f"Twilio API: REST requests (make_call, send_sms) go to the stand-in at {url}, NOT to "
        "Twilio (api.twilio.com): no call is placed, no text is sent, and no status callback "
        f"will come. Simulate them: {this_python()} -m devhost.simulate call-status --sid CA... "
        "--status completed"
    )


def this_python() -> str:
    """The interpreter this host runs on, as a user in the app's folder types it
    (.venv/bin/python): a bare `python` may be one without the app's packages."""
    path = Path(sys.executable)
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def served_names(allowed: Sequence[str]) -> list[str]:
    """The host names the local host answers to besides addresses and localhost: `allowed`
    (--allow-host), and the hosts of PUBLIC_BASE_URL (a tunnel forwards its own name) and
    WEBSITE_HOSTNAME, as the environment and local.settings.json set them."""
    from urllib.parse import urlsplit

    names = list(allowed)
    for value in (os.environ.get("PUBLIC_BASE_URL", ""),
                  "//" + os.environ.get("WEBSITE_HOSTNAME", "")):
        with contextlib.suppress(ValueError):
            if name := urlsplit(value.strip()).hostname:
                names.append(name)
    return names


def unkeyed_warning(host: WorkerHost, host_keys: Sequence[str]) -> str | None:
    """The start-up warning when functions that Azure guards with a key answer without one.

    Like `func start`, the local host enforces no key unless one is configured; `make_call`
    would then place calls for anyone who reaches the port, a tunnel's visitors included.
    """
    if host_keys:
        return None
    open_functions = [
        f"{name} (authLevel {spec.trigger.auth_level})"
        for name, spec in sorted(host.functions.items())
        if spec.trigger is not None and not spec.disabled
        and spec.trigger.auth_level != "anonymous"
    ]
    if not open_functions:
        return None
    return (
        f"warning: no --host-key, so {', '.join(open_functions)} answer without a key, to "
        "anyone who can reach this port (through a tunnel such as ngrok, anyone with its URL). "
        "To require a key, as Azure does, start with --host-key KEY and send it as "
        f"{KEY_HEADER}: KEY or ?{KEY_QUERY}=KEY (authLevel admin functions are then refused: "
        "this host has no master key)."
    )


_stopping_since: list[float] = []


def _stop(signum: int, frame: object) -> None:
    """The first Ctrl+C (or SIGTERM): stop. Any later one only says that stopping goes on, instead
    of cutting the queues' drain short with a traceback (it is bounded: STOP_TIMEOUT)."""
    _stopping_since.append(time.monotonic())
    for each in _STOP_SIGNALS:
        signal.signal(each, _still_stopping)
    raise KeyboardInterrupt


def _still_stopping(signum: int, frame: object) -> None:
    # Within a second it is the same stop arriving twice (a signal to the process group reaches
    # this host and scripts/start.sh, which passes it on): nothing to say.
    if _stopping_since and time.monotonic() - _stopping_since[0] < 1.0:
        return
    print(f"Still stopping: queue messages in flight get up to {STOP_TIMEOUT:g} s to finish.",
          file=sys.stderr, flush=True)


# SIGINT only when it is not ignored: a shell starts a background job with SIGINT ignored, so
# that Ctrl+C in its terminal stops the foreground job only.
_STOP_SIGNALS = (signal.SIGTERM,) + (
    (signal.SIGINT,) if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else ())


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
            # Names only (never values): an environment variable that shadows the file is the
            # usual reason a changed local.settings.json seems to have no effect.
            print(f"Loaded {len(applied)} settings from {found.path.name}"
                  + (f" (kept from the environment instead: {', '.join(sorted(kept))})"
                     if kept else ""))
            port = found.port if port is None else port
        elif not args.no_settings:
            print(local_settings.missing_message(root))
        if port is not None and not 0 <= port <= 65535:
            # Checked before the app loads; the socket layer would raise OverflowError.
            source = ("--port" if args.port is not None
                      else "Host.LocalHttpPort in local.settings.json")
            print(f"error: port {port} is not a TCP port (0 to 65535): check {source}",
                  file=sys.stderr)
            return 2
        counter = None
        if args.count_storage:
            from devhost import storage_ops

            counter = storage_ops.install(args.count_storage)
        host = WorkerHost.start(root, host_keys=args.host_key)
    except (AppConfigError, FunctionLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    port = local_settings.DEFAULT_PORT if port is None else port
    stand_in = None
    if args.twilio_api:
        from devhost.standin import install

        stand_in = install(args.twilio_api)
        if local_settings.stand_in_account():
            print("TWILIO_ACCOUNT_SID is unset or the example's placeholder: the stand-in gets an "
                  "account SID made up for this run.")
    try:
        served = serve(host, bind=args.bind, port=port, max_connections=args.max_connections,
                       request_time_limit=args.request_time_limit,
                       host_names=served_names(args.allow_host))
    except OSError as error:
        print(f"error: cannot listen on {args.bind}:{port}: {error.strerror}; "
              "is another host running? Try --port.", file=sys.stderr)
        return 1
    # As `func start` does: a loopback WEBSITE_HOSTNAME is the app's evidence of a local run
    # (shared.common.public_url), the only thing that lets it check signatures against the
    # origin a request names. A value from the environment or local.settings.json is kept.
    os.environ.setdefault("WEBSITE_HOSTNAME", f"localhost:{served.port}")
    print(f"\nFunctions (loaded through the Python worker in {host.load_seconds:.2f} s):\n")
    print("\n".join(describe_functions(host, served.url)))
    if "console" in host.functions:  # the page, at its route's folder (its files are relative)
        console = host.url_for("console", served.url).split("{")[0]
        print(f"\nConsole: {console} (docs/console.md)")
    if args.host_key:
        print("\nauthLevel function requires one of the --host-key keys.")
    warning = unkeyed_warning(host, args.host_key)
    if warning:
        print(f"\n{warning}", file=sys.stderr, flush=True)
    placeholders = None if args.twilio_api else local_settings.placeholder_warning()
    if placeholders:
        print(f"\n{placeholders}", file=sys.stderr, flush=True)
    if stand_in is not None:
        print(f"\n{stand_in_notice(stand_in.base_url)}")
    queues = (
        start_queues(host, args.processing_visibility)
        if host.queue_functions and not args.no_queues
        else None
    )
    try:
        # Inside the try, before the ready line (which a supervisor may answer with a stop): a
        # stop that comes at once still stops cleanly. A process manager's stop is a Ctrl+C too.
        for each in _STOP_SIGNALS:
            signal.signal(each, _stop)
        print(f"\nListening on {served.url}. Press Ctrl+C to stop.", flush=True)
        served.thread.join()
    except KeyboardInterrupt:
        print("\nStopping.")
    finally:
        if queues is not None:
            queues.stop()  # in-flight messages finish before the REST client's sessions close
        if stand_in is not None:
            served.server.shutdown()  # no request in flight, then the REST client's sessions
            stand_in.close_all()
        served.close()
        if counter is not None:
            counter.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
