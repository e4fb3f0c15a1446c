"""The served host's defences, over a real socket on 127.0.0.1: what an attack run found open.

Each test speaks raw HTTP/1.1 to `devhost.server` on a free port, as a hostile client would:
chunk sizes that are not hex, Host headers Kestrel refuses, clients that stall or vanish, more
connections than the cap, and the start-up warning when `authLevel function` is unkeyed.
Timeouts here are short (the server's is 0.5 s) and every socket read is bounded.
"""

from __future__ import annotations

import http.client
import json
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import server_command

from devhost.server import ServedHost, serve
from devhost.worker_host import WorkerHost

FIXTURE_APP = Path(__file__).parent / "fixtures" / "devhost_app"
APP_ROOT = Path(__file__).parents[1]
SERVER_TIMEOUT = 0.5  # the served host's socket timeout in these tests
CLIENT_TIMEOUT = 5.0  # how long a test waits for an answer before failing (never hangs)
MAX_BODY = 100


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    closed: bool  # the server closed the connection after answering
    seconds: float  # from the last byte sent to the answer's end


def connect(served: ServedHost) -> socket.socket:
    return socket.create_connection(("127.0.0.1", served.port), timeout=CLIENT_TIMEOUT)


def is_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def read_answer(sock: socket.socket, began: float) -> Answer:
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    seconds = time.monotonic() - began
    # A keep-alive answer would only close at the server's idle timeout: not waited for.
    return Answer(response.status, response.headers, body,
                  response.will_close and is_closed(sock), seconds)


def exchange(served: ServedHost, data: bytes, *, half_close: bool = False) -> Answer:
    """Send `data` as is; `half_close` ends the stream after it (as a client that has no more)."""
    with connect(served) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_answer(sock, time.monotonic())


def wait_for(condition: Callable[[], bool], seconds: float = CLIENT_TIMEOUT) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def refused_by_the_host(answer: Answer, status: int) -> None:
    """The host answered `status` itself (the worker never saw the request) and closed."""
    assert answer.status == status, answer
    assert answer.body == b""
    assert answer.headers["X-Devhost-Reason"]
    assert answer.headers["Connection"] == "close"
    assert answer.closed


@pytest.fixture(scope="module")
def limited() -> Iterator[ServedHost]:
    """The fixture app with a 100-byte body limit (no keys)."""
    with serve(WorkerHost.start(FIXTURE_APP), port=0, timeout=SERVER_TIMEOUT,
               max_body=MAX_BODY) as served:
        yield served


@pytest.fixture
def capped() -> Iterator[ServedHost]:
    """Two connections at most and a 0.5 s timeout; its own server, as tests stall it."""
    with serve(WorkerHost.start(FIXTURE_APP), port=0, timeout=SERVER_TIMEOUT,
               max_connections=2) as served:
        yield served


def chunked(body: bytes) -> bytes:
    return (b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + body)


# -- 1. chunked bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"-1\r\n" + b"x" * 60 + b"\r\n0\r\n\r\n",  # once read the stream to its end, no limit
    b"0x5\r\nhello\r\n0\r\n\r\n",  # int(..., 16) takes a 0x prefix, a sign, "_" and spaces
    b"+5\r\nhello\r\n0\r\n\r\n",
    b"0_5\r\nhello\r\n0\r\n\r\n",
    b" 5\r\nhello\r\n0\r\n\r\n",
    b"5 \r\nhello\r\n0\r\n\r\n",
    b"\r\nhello\r\n0\r\n\r\n",
    b"zz\r\nhello\r\n0\r\n\r\n",
    b"5\nhello\r\n0\r\n\r\n",  # bare LF
    b"5\r\nhelloXX\r\n0\r\n\r\n",  # data longer than its size
    b"10\r\nhello",  # the stream ends inside a chunk
    b"5\r\nhello\r\n",  # no last chunk
    b"5\r\nhello\r\n0\r\nX-Trailer: never ends",  # trailers without the final CRLF
], ids=["-1", "0x", "plus", "underscore", "leading-space", "trailing-space", "empty", "not-hex",
        "bare-lf", "overlong-data", "eof-in-chunk", "no-last-chunk", "open-trailers"])
def test_a_malformed_chunked_body_gets_400_and_never_reaches_the_worker(limited, body):
    refused_by_the_host(exchange(limited, chunked(body), half_close=True), 400)


def test_hex_chunk_sizes_with_extensions_and_trailers_are_read(limited):
    answer = exchange(limited, chunked(b"A;name=value\r\n0123456789\r\n3\r\nabc\r\n"
                                       b"0;last\r\nX-Trailer: t\r\n\r\n"))
    assert answer.status == 200
    assert json.loads(answer.body)["body"] == "0123456789abc"


def test_the_body_limit_holds_across_chunks(limited):
    at_limit = b"3C\r\n" + b"a" * 60 + b"\r\n28\r\n" + b"b" * 40 + b"\r\n0\r\n\r\n"
    assert exchange(limited, chunked(at_limit)).status == 200
    over = b"3C\r\n" + b"a" * 60 + b"\r\n3C\r\n" + b"b" * 60 + b"\r\n0\r\n\r\n"
    refused_by_the_host(exchange(limited, chunked(over)), 413)


def test_a_body_over_the_limit_by_content_length_gets_413_too(limited):
    request = (b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 101\r\n\r\n"
               + b"a" * 101)
    refused_by_the_host(exchange(limited, request), 413)


@pytest.mark.parametrize("framing", [
    b"Content-Length: -1\r\n",  # once gave an empty body and left the rest as a next request
    b"Content-Length: +5\r\n",
    b"Content-Length: 5, 5\r\n",
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"Transfer-Encoding: chunked, chunked\r\n",
], ids=["negative", "plus", "list", "two-lengths", "length-and-chunked", "not-chunked",
        "chunked-twice"])
def test_ambiguous_framing_gets_400(limited, framing):
    request = b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n" + framing + b"\r\nhello"
    refused_by_the_host(exchange(limited, request, half_close=True), 400)


def test_100_continue_comes_only_when_the_body_is_wanted(limited):
    head = (b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
            b"Content-Length: 5\r\n\r\n")
    with connect(limited) as sock:
        sock.sendall(head)
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"hello")
        answer = read_answer(sock, time.monotonic())
    assert json.loads(answer.body)["body"] == "hello"
    with connect(limited) as sock:  # refused before the client sends the body: no 100 first
        sock.sendall(head.replace(b"Host: 127.0.0.1", b"Host: x/y"))
        assert sock.recv(12) == b"HTTP/1.1 400"


# -- 2. the Host header ----------------------------------------------------------------------------


def get_with(host_lines: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET /api/echo " + version + b"\r\n" + host_lines + b"Connection: close\r\n\r\n"


@pytest.mark.parametrize("host", [
    "localhost", "127.0.0.1", "127.0.0.1:7071", "[::1]", "[::1]:7071", "myapp.example.net",
    "a-b_c~d.example", "xn--bcher-kva.example:443",
])
def test_a_valid_host_is_the_request_url(limited, host):
    answer = exchange(limited, get_with(f"Host: {host}\r\n".encode()))
    assert answer.status == 200
    assert json.loads(answer.body)["url"] == f"http://{host}/api/echo"


def test_whitespace_around_the_host_is_not_part_of_it(limited):
    answer = exchange(limited, get_with(b"Host:   localhost:7071 \t\r\n"))
    assert json.loads(answer.body)["url"] == "http://localhost:7071/api/echo"


@pytest.mark.parametrize("host", [
    b"a[", b"x/y", b"a b", b"a\x01b", b"myapp.example.net/api/sms_url#", b"", b":7071",
    b"host:", b"host:80a", b"host:-1", b"host:80:81", b"[::1", b"[::1]x", b"[::1]:", b"[zz::1]",
    b"[fe80::1%25eth0]", b"user@host", b"ho%41st", b"h\xe9", b"a,b", b"a?b", b"a#",
])
def test_an_invalid_host_gets_400(limited, host):
    refused_by_the_host(exchange(limited, get_with(b"Host: " + host + b"\r\n")), 400)


@pytest.mark.parametrize("host_lines", [
    b"",
    b"Host: localhost\r\nHost: localhost\r\n",
    b"Host: localhost\r\nHost: evil.example\r\n",
], ids=["missing", "twice-same", "twice-different"])
def test_http11_needs_exactly_one_host(limited, host_lines):
    refused_by_the_host(exchange(limited, get_with(host_lines)), 400)


@pytest.mark.parametrize("host_lines", [b"", b"Host:\r\n"], ids=["missing", "empty"])
def test_http10_without_a_host_gets_the_bind_address(limited, host_lines):
    answer = exchange(limited, get_with(host_lines, b"HTTP/1.0"))
    assert answer.status == 200
    assert json.loads(answer.body)["url"] == f"{limited.url}/api/echo"


def test_http10_with_an_invalid_host_gets_400(limited):
    refused_by_the_host(exchange(limited, get_with(b"Host: x/y\r\n", b"HTTP/1.0")), 400)


@pytest.mark.parametrize("line", [
    b"X-Note: a\x01b\r\n",  # a control character
    b"X-Note: a\r\n b\r\n",  # obsolete line folding, kept with its CR LF in the value
    b"Host : evil.example\r\nX-Dropped: y\r\n",  # the parser drops every header after it
], ids=["control", "folded", "space-before-colon"])
def test_a_malformed_header_line_gets_400(limited, line):
    request = b"GET /api/echo HTTP/1.1\r\nHost: localhost\r\n" + line + b"\r\n"
    refused_by_the_host(exchange(limited, request), 400)


@pytest.mark.parametrize("content_type", [
    b"multipart/form-data; boundary=abc",
    b"multipart/form-data",
], ids=["with-boundary", "without"])
def test_a_multipart_body_reaches_the_function(limited, content_type):
    """The header parser's notes on a multipart body it has not read are not header syntax: the
    function gets the request and answers it (make_call's 415 JSON), as on Azure. Found by an
    attack run: curl -F got an empty 400 from the host."""
    body = b"--abc\r\nContent-Disposition: form-data; name=to\r\n\r\n+1\r\n--abc--\r\n"
    request = (b"POST /api/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: " + content_type
               + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    answer = exchange(limited, request)
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["body"] == body.decode()


# -- 3. timeouts and the connection cap ------------------------------------------------------------


@pytest.mark.parametrize("partial", [
    b"GET /api/ec",
    b"GET /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc",
    b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe",
], ids=["request-line", "headers", "short-body", "chunk"])
def test_a_stalled_request_gets_408_and_is_closed_within_the_timeout(capped, partial):
    with connect(capped) as sock:
        sock.sendall(partial)
        answer = read_answer(sock, time.monotonic())
    assert answer.status == 408
    assert answer.closed
    assert SERVER_TIMEOUT * 0.8 <= answer.seconds < SERVER_TIMEOUT + 2


def test_an_http09_request_line_is_refused_at_once(capped):
    answer = exchange(capped, b"GET /\r\n")
    assert (answer.status, answer.closed) == (400, True)
    assert answer.seconds < SERVER_TIMEOUT


def test_an_idle_keep_alive_connection_is_closed_quietly(capped):
    with connect(capped) as sock:
        sock.sendall(b"GET /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.read()
        assert response.status == 200
        began = time.monotonic()
        assert sock.recv(1) == b""  # no 408 on a connection that merely went idle
        assert time.monotonic() - began < SERVER_TIMEOUT + 2


def test_connections_beyond_the_cap_get_503_until_one_frees(capped):
    stalled = [connect(capped) for _ in range(2)]
    try:
        for sock in stalled:
            sock.sendall(b"GET /api/echo HTTP/1.1\r\n")  # and nothing more
        assert wait_for(lambda: capped.server.open_connections == 2)
        threads = threading.active_count()

        answer = exchange(capped, b"GET /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert answer.status == 503
        assert answer.headers["Connection"] == "close"
        assert answer.closed
        assert answer.seconds < SERVER_TIMEOUT  # at once, not after the stalled ones time out
        assert threading.active_count() <= threads  # no thread for the refused connection

        for sock in stalled:  # the stalled ones time out, freeing their slots
            assert read_answer(sock, time.monotonic()).status == 408
        assert wait_for(lambda: capped.server.open_connections == 0)
        assert exchange(capped, b"GET /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").status == 200
    finally:
        for sock in stalled:
            sock.close()


TIME_LIMIT = 1.5  # the request time limit of the `trickled` server
TRICKLE = 0.1  # seconds between the bytes of a slow client: well within the 0.5 s per-read timeout


@pytest.fixture
def trickled() -> Iterator[ServedHost]:
    """A 0.5 s per-read timeout and a 1.5 s limit per request; its own server, as tests stall it."""
    with serve(WorkerHost.start(FIXTURE_APP), port=0, timeout=SERVER_TIMEOUT,
               request_time_limit=TIME_LIMIT, max_connections=4) as served:
        yield served


def trickle(sock: socket.socket, head: bytes, endless: Iterator[bytes],
            seconds: float = TIME_LIMIT + 4) -> Answer | None:
    """Send `head`, then a byte of `endless` every TRICKLE seconds until the server answers (the
    answer) or `seconds` pass (None: the server kept taking bytes)."""
    sock.sendall(head)
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if select.select([sock], [], [], TRICKLE)[0]:
            return read_answer(sock, began)
        try:
            sock.sendall(next(endless))
        except (BrokenPipeError, ConnectionResetError):
            return read_answer(sock, began)
    return None


def forever(pattern: bytes) -> Iterator[bytes]:
    while True:
        for byte in pattern:
            yield bytes([byte])


@pytest.mark.parametrize(("head", "pattern"), [
    (b"GET /api/echo?", b"a=b&"),  # a request line that never ends
    (b"GET /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: loris\r\n"),  # headers
    (b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 90000\r\n\r\n", b"a"),
    (b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"1\r\na\r\n"),
], ids=["request-line", "headers", "body", "chunks"])
def test_a_client_trickling_bytes_is_cut_off_at_the_request_time_limit(trickled, head, pattern):
    """Slowloris: every byte comes within the per-read timeout, yet the request gets 408 once
    its time limit has passed, and the server answers others meanwhile."""
    with connect(trickled) as slow:
        answers: list[Answer | None] = []
        worker = threading.Thread(target=lambda: answers.append(trickle(slow, head, forever(
            pattern))))
        worker.start()
        time.sleep(TIME_LIMIT / 2)
        other = exchange(trickled, b"GET /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"Connection: close\r\n\r\n")
        worker.join(TIME_LIMIT + 10)
    assert other.status == 200
    [answer] = answers
    assert answer is not None, "the server kept reading the trickle past its time limit"
    assert (answer.status, answer.closed) == (408, True)
    assert TIME_LIMIT * 0.9 <= answer.seconds < TIME_LIMIT + 1


def test_the_time_limit_starts_with_a_keep_alive_requests_first_byte(trickled):
    """A connection idle between requests (under the per-read timeout) does not use up the next
    request's time; that request, trickled, is cut off by its own limit."""
    with connect(trickled) as sock:
        for _ in range(4):  # 4 x 0.4 s idle: more than the limit in all, within the timeout each
            sock.sendall(b"GET /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_answer(sock, time.monotonic()).status == 200
            time.sleep(SERVER_TIMEOUT * 0.8)
        answer = trickle(sock, b"GET /api/echo HTTP/1.1\r\n", forever(b"X-Slow: loris\r\n"))
    assert answer is not None
    assert answer.status == 408
    assert TIME_LIMIT * 0.9 <= answer.seconds < TIME_LIMIT + 1


def test_a_request_within_the_time_limit_is_served_even_if_slow(trickled):
    request = b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
    with connect(trickled) as sock:
        for byte in request:  # about 0.5 s in all, a byte every 7 ms
            sock.sendall(bytes([byte]))
            time.sleep(0.007)
        answer = read_answer(sock, time.monotonic())
    assert answer.status == 200
    assert json.loads(answer.body)["body"] == "hello"


# -- 4. clients that disconnect --------------------------------------------------------------------


def test_a_client_that_resets_its_connection_is_one_log_line(limited, caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="devhost.server")
    capfd.readouterr()
    for _ in range(3):
        sock = connect(limited)
        sock.sendall(b"GET /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        # SO_LINGER 0: close() sends a reset, so the server's next read or write fails.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def disconnects() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "devhost.server"
                and "disconnected" in r.getMessage()]

    assert wait_for(lambda: len(disconnects()) == 3)
    assert all(r.levelno == logging.DEBUG and "\n" not in r.getMessage() for r in disconnects())
    assert all(r.exc_info is None for r in caplog.records if r.name == "devhost.server")
    assert "Traceback" not in capfd.readouterr().err


# -- 5. the warning when authLevel function is unkeyed ---------------------------------------------


def test_unkeyed_make_call_is_named_in_a_start_up_warning():
    with server_command("--app-root", str(APP_ROOT)) as (output, _, _process):
        assert "warning: no --host-key" in output
        assert "make_call (authLevel function)" in output
        assert "--host-key KEY" in output
        assert "voice_url (" not in output and "sms_url (" not in output


def test_no_warning_with_a_host_key_and_make_call_needs_it():
    with server_command("--app-root", str(APP_ROOT), "--host-key", "start-up-key") as (
            output, base_url, _process):
        assert "warning" not in output.lower()
        connection = http.client.HTTPConnection("127.0.0.1", int(base_url.rsplit(":", 1)[1]),
                                                timeout=CLIENT_TIMEOUT)
        try:
            connection.request("POST", "/api/make_call", body=b"{}")
            assert connection.getresponse().status == 401  # refused by the host: no Twilio call
        finally:
            connection.close()


def test_control_characters_of_the_request_line_are_logged_escaped(limited, caplog):
    """http.server passes them through; raw, an escape sequence would repaint the developer's
    terminal (a CR or LF there, http.server refuses itself)."""
    caplog.set_level(logging.INFO, logger="devhost.server")

    answer = exchange(limited, b"GET /api/echo\x1b[2J?x=\x07\x7f HTTP/1.1\r\nHost: localhost\r\n\r\n")

    assert wait_for(lambda: any("/api/echo" in r.getMessage() for r in caplog.records)), answer
    lines = [r.getMessage() for r in caplog.records if "/api/echo" in r.getMessage()]
    assert lines
    for line in lines:
        assert "\x1b" not in line and "\x07" not in line and "\x7f" not in line
        assert "\\x1b" in line


def test_phone_numbers_in_a_query_are_masked_in_the_access_log(limited, caplog):
    """A GET webhook carries From and To in its query: logged like the app logs numbers."""
    caplog.set_level(logging.INFO, logger="devhost.server")

    answer = exchange(limited, b"GET /api/echo?From=%2B14155550123&To=15005550006&code=k&n=42 "
                               b"HTTP/1.1\r\nHost: localhost\r\n\r\n")

    assert wait_for(lambda: any("/api/echo" in r.getMessage() for r in caplog.records)), answer
    [line] = [r.getMessage() for r in caplog.records if "/api/echo" in r.getMessage()]
    assert "4155550123" not in line and "5005550006" not in line
    assert "From=%2B1415*****23" in line
    assert "n=***" in line and "code=***" in line


@pytest.mark.parametrize("path", ["/api/echo/+14155550123", "/api/echo/%2B14155550123",
                                  "/api/echo/14155550123", "/api/echo?%2B14155550123=1"])
def test_a_phone_number_in_the_path_is_masked_in_the_access_log(limited, caplog, path):
    """No route takes a number in its path, but a mistaken lookup sends one: logged masked."""
    caplog.set_level(logging.INFO, logger="devhost.server")

    exchange(limited, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())

    assert wait_for(lambda: any("/api/echo" in r.getMessage() for r in caplog.records))
    [line] = [r.getMessage() for r in caplog.records if "/api/echo" in r.getMessage()]
    assert "4155550123" not in line and "1415*****23" in line


def test_an_id_with_a_run_of_digits_in_the_path_is_logged_as_it_is(limited, caplog):
    """A broadcast id (BC, 14 digits of its time, 16 hex) is no phone number."""
    caplog.set_level(logging.INFO, logger="devhost.server")
    path = "/api/echo/BC20261207123456abcdef0123456789"

    exchange(limited, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())

    assert wait_for(lambda: any(path in r.getMessage() for r in caplog.records))


def test_a_get_webhooks_query_values_are_not_in_the_access_log(limited, caplog):
    """A GET webhook carries Twilio's fields in its query: the access log keeps their names but
    no token, SID, text body or whole number (issue 19, item 13)."""
    caplog.set_level(logging.DEBUG, logger="devhost")
    query = urlencode({
        "AccountSid": "AC0123456789abcdef0123456789abcdef",
        "CallToken": "%7B%22parentCallInfoToken%22%3A%22eyJhbGciOiJFUzI1NiJ9.secret",
        "Body": "my PIN is 4711",
        "From": "+14155550123",
        "Digits": "1234567",
        "Empty": "",
    })
    request = f"GET /api/echo?{query} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()

    answer = exchange(limited, request)

    assert answer.status == 200
    assert wait_for(lambda: any("/api/echo" in r.getMessage() for r in caplog.records))
    [line] = [r.getMessage() for r in caplog.records if "/api/echo" in r.getMessage()]
    for secret in ("0123456789abcdef", "parentCallInfoToken", "eyJhbGci", "secret", "PIN",
                   "4711", "4155550123", "1234567"):
        assert secret not in line
    assert ("/api/echo?AccountSid=***&CallToken=***&Body=***&From=%2B1415*****23&Digits=***"
            "&Empty= -> 200") in line
    assert all("4155550123" not in r.getMessage() for r in caplog.records)


def test_a_query_in_a_request_line_http_server_refuses_is_not_logged(limited, caplog):
    """http.server's own 400 quotes a one-word request line; its query is hidden there too."""
    caplog.set_level(logging.DEBUG, logger="devhost")

    answer = exchange(limited, b"GET/api/echo?Body=my-secret-text\r\n\r\n")

    assert answer.status == 400
    assert wait_for(lambda: any("Bad request" in r.getMessage() for r in caplog.records))
    assert "my-secret-text" not in caplog.text
    assert "GET/api/echo?***" in caplog.text


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /api/echo?a b HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),  # a space in the target
    (b"GET /api/echo HTTP/1.1\r\nHost: localhost\r\nX-Twilio-Signature: "
     + b"A" * 100_000 + b"\r\n\r\n", 431),  # a header line longer than http.server reads
    (b"GET /api/echo?x=" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414),
], ids=["request-line", "header-too-long", "request-line-too-long"])
def test_http_servers_own_refusals_are_the_hosts_empty_answers(limited, request_bytes, status):
    """Not the standard library's HTML error page, which echoed the request line (found by an
    attack run); a request line too long to read is 414 (it has no path to log yet)."""
    refused_by_the_host(exchange(limited, request_bytes), status)


def test_the_request_time_limit_option():
    from devhost.server import REQUEST_TIME_LIMIT, _parse_args

    assert _parse_args([]).request_time_limit == REQUEST_TIME_LIMIT == 30
    assert _parse_args(["--request-time-limit", "5"]).request_time_limit == 5
    for wrong in ("0", "3601", "soon"):
        with pytest.raises(SystemExit):
            _parse_args(["--request-time-limit", wrong])
