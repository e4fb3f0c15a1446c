"""The in-process host's mechanics, on a small fixture app and on the real app.

What is tested is the host's part, done the way Azure's host does it: routing (404, including a
known route with a method it does not accept), function keys (401), loading through the worker
(failures name the function and carry the worker's message), the RpcHttp request it builds and
the response it turns back into status, headers and cookies.
"""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devhost.appconfig import AppConfigError, RouteTemplate
from devhost.worker_host import FunctionLoadError, WorkerHost

FIXTURE_APP = Path(__file__).parent / "fixtures" / "devhost_app"
REAL_FUNCTIONS = {"make_call", "voice_url", "sms_url"}


@pytest.fixture(scope="module")
def host():
    with WorkerHost.start(FIXTURE_APP) as started:
        yield started


def echo(host: WorkerHost, method: str, url: str, **kwargs) -> dict:
    response = host.request(method, url, **kwargs)
    assert response.status == 200, response.error
    return response.json()


def write_app(root: Path, functions: dict[str, tuple[str, str]], host_json: str = "") -> Path:
    """A throwaway app: {name: (function.json text, __init__.py text)}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "host.json").write_text(host_json or '{"version": "2.0"}')
    for name, (config, code) in functions.items():
        (root / name).mkdir()
        (root / name / "function.json").write_text(config)
        (root / name / "__init__.py").write_text(code)
    return root


HTTP_FUNCTION_JSON = """{"bindings": [
  {"authLevel": "anonymous", "type": "httpTrigger", "direction": "in", "name": "%s",
   "methods": ["get"]},
  {"type": "http", "direction": "out", "name": "$return"}]}"""
HTTP_MAIN = """import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")
"""


# -- loading through the worker ------------------------------------------------------------


def test_every_function_in_the_repo_loads_through_the_worker(start_worker_host):
    """A binding renamed in any function.json fails here, with the worker's own message."""
    host = start_worker_host()
    assert set(host.functions) == {p.parent.name for p in host.config.root.glob("*/function.json")}
    assert set(host.functions) >= REAL_FUNCTIONS
    assert host.load_seconds < 5


def test_a_renamed_binding_in_the_real_app_fails_with_the_workers_message(tmp_path, app_root):
    copy = tmp_path / "app"
    copy.mkdir()
    shutil.copy(app_root / "host.json", copy)
    for name in REAL_FUNCTIONS:
        shutil.copytree(app_root / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    config = copy / "voice_url" / "function.json"
    config.write_text(config.read_text().replace('"name": "req"', '"name": "request"'))

    with pytest.raises(FunctionLoadError) as raised:
        WorkerHost.start(copy)

    assert set(raised.value.failures) == {"voice_url"}
    message = str(raised.value)
    assert "'voice_url' failed to load" in message
    assert "FunctionLoadError: cannot load the voice_url function" in message
    assert "declared in Python but not in function.json: {'req'}" in message


def test_a_load_failure_names_the_function_and_carries_the_workers_message(tmp_path):
    root = write_app(tmp_path / "app", {
        "good": (HTTP_FUNCTION_JSON % "req", HTTP_MAIN),
        "renamed": (HTTP_FUNCTION_JSON % "request", HTTP_MAIN),
        "missing_module": (HTTP_FUNCTION_JSON % "req", "import not_installed_anywhere\n"),
    })
    with pytest.raises(FunctionLoadError) as raised:
        WorkerHost.start(root)

    failures = raised.value.failures
    assert set(failures) == {"renamed", "missing_module"}
    assert failures["renamed"] == (
        "FunctionLoadError: cannot load the renamed function: the following parameters are "
        "declared in Python but not in function.json: {'req'}"
    )
    assert failures["missing_module"].startswith(
        "ModuleNotFoundError: No module named 'not_installed_anywhere'. Cannot find module."
    )
    assert "Traceback" in raised.value.stack_traces["renamed"]


def test_a_wrong_return_annotation_fails_to_load(tmp_path):
    code = HTTP_MAIN.replace("-> func.HttpResponse", "-> int")
    root = write_app(tmp_path / "app", {"typed": (HTTP_FUNCTION_JSON % "req", code)})
    with pytest.raises(FunctionLoadError, match="does not match binding type"):
        WorkerHost.start(root)


def test_an_unreadable_function_json_names_the_file(tmp_path):
    root = write_app(tmp_path / "app", {"broken": ("{not json", HTTP_MAIN)})
    with pytest.raises(AppConfigError, match=r"broken[/\\]function\.json"):
        WorkerHost.start(root)


def test_hosts_of_different_apps_with_the_same_folder_names_stay_apart(tmp_path):
    first = write_app(tmp_path / "one", {"same": (HTTP_FUNCTION_JSON % "req", HTTP_MAIN)})
    second = write_app(tmp_path / "two", {"same": (
        HTTP_FUNCTION_JSON % "req", HTTP_MAIN.replace('"ok"', '"two"'))})
    with WorkerHost.start(first) as one, WorkerHost.start(second) as two:
        assert one.request("GET", "/api/same").text == "ok"
        assert two.request("GET", "/api/same").text == "two"


# -- routing, as the host answers ------------------------------------------------------------


def test_unknown_route_is_404_with_an_empty_body(host):
    response = host.request("GET", "/api/nowhere")
    assert (response.status, response.body, response.function) == (404, b"", None)


def test_a_method_the_function_does_not_accept_is_404_as_in_azure(host):
    """Azure's host answers 404, not 405 (azure-functions-host#10098); devhost says why."""
    response = host.request("GET", "/api/echo_async")
    assert (response.status, response.body) == (404, b"")
    assert response.headers["X-Devhost-Reason"] == "echo_async accepts POST, not GET"


def test_route_prefix_is_required(host):
    assert host.request("POST", "/echo").status == 404


def test_routes_match_case_insensitively_with_an_optional_trailing_slash(host):
    assert host.request("POST", "/API/Echo").status == 200
    assert host.request("POST", "/api/echo/").status == 200


def test_route_parameters_and_constraints(host):
    assert echo(host, "GET", "/api/items/42/bob%20smith") == {"id": "42", "name": "bob smith"}
    assert echo(host, "GET", "/api/items/42") == {"id": "42"}
    assert host.request("GET", "/api/items/forty-two").status == 404  # {id:int}


def test_route_template_compilation():
    template = RouteTemplate.compile("api/files/{*path}")
    assert template.match("/api/files/a/b.txt") == {"path": "a/b.txt"}
    assert RouteTemplate.compile("api/{id:guid}").match("/api/not-a-guid") is None


def test_a_route_naming_a_parameter_twice_is_refused_when_the_app_is_read():
    """As the host refuses it at start-up (the pattern itself is compiled only on first use)."""
    with pytest.raises(AppConfigError, match=r"names the parameter \{ID\} more than once"):
        RouteTemplate.compile("api/{id}/copies/{ID}")


def test_the_root_answers_like_the_hosts_splash_page(host):
    response = host.request("GET", "/")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")


# -- function keys -----------------------------------------------------------------------------


def test_without_configured_keys_function_level_is_open_like_func_start(host):
    assert host.request("POST", "/api/keyed").status == 200


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({}, "", 401),
        ({"x-functions-key": "wrong"}, "", 401),
        ({}, "?code=wrong", 401),
        ({"x-functions-key": "host-key"}, "", 200),
        ({"X-Functions-Key": "function-key"}, "", 200),
        ({}, "?code=function-key", 200),
        ({}, "?code=master-key", 200),
        ({}, "?code=other-functions-key", 401),
    ],
)
def test_function_level_needs_a_key_when_keys_are_configured(
    start_worker_host, headers, query, status
):
    keyed = start_worker_host(
        FIXTURE_APP,
        function_keys={"keyed": "function-key", "echo": "other-functions-key"},
        host_keys=["host-key"],
        master_key="master-key",
    )
    response = keyed.request("POST", "/api/keyed" + query, headers=headers)
    assert response.status == status
    if status == 401:
        assert (response.body, response.function) == (b"", None)


def test_anonymous_functions_need_no_key_when_keys_are_configured(start_worker_host):
    keyed = start_worker_host(FIXTURE_APP, host_keys=["host-key"])
    assert keyed.request("POST", "/api/echo").status == 200


def test_routing_comes_before_the_key_check(start_worker_host):
    keyed = start_worker_host(FIXTURE_APP, host_keys=["host-key"])
    assert keyed.request("GET", "/api/keyed").status == 404


# -- the request, built as the host builds it --------------------------------------------------


def test_request_is_built_as_the_host_builds_it(host):
    seen = echo(
        host,
        "post",
        "/api/echo?a=1&a=2&empty=&text=x+y%21",
        headers=[("Content-Type", "application/x-www-form-urlencoded"), ("X-Twice", "one"),
                 ("x-twice", "two")],
        body=b"From=%2B14155550100&Body=hi",
        base_url="https://example.test",
    )
    assert seen["method"] == "POST"
    # Full URL from scheme, Host header, path and the query exactly as sent.
    assert seen["url"] == "https://example.test/api/echo?a=1&a=2&empty=&text=x+y%21"
    # Lower-cased headers, repeated ones joined by commas (ASP.NET's StringValues).
    assert seen["headers"] == {
        "host": "example.test",
        "content-type": "application/x-www-form-urlencoded",
        "x-twice": "one,two",
        "content-length": "27",
    }
    # Query values decoded, repeated keys joined, empty values dropped (no nullable capability).
    assert seen["params"] == {"a": "1,2", "text": "x y!"}
    assert seen["body"] == "From=%2B14155550100&Body=hi"
    assert seen["form"] == {"From": "+14155550100", "Body": "hi"}


def test_an_explicit_host_header_and_absolute_urls_make_the_url(host):
    seen = echo(host, "GET", "/api/echo", headers={"Host": "abc.ngrok.app"})
    assert seen["url"] == "http://abc.ngrok.app/api/echo"
    seen = echo(host, "GET", "https://myapp.azurewebsites.net/api/echo?x=1")
    assert seen["url"] == "https://myapp.azurewebsites.net/api/echo?x=1"
    assert seen["headers"]["host"] == "myapp.azurewebsites.net"


def test_the_raw_body_bytes_reach_the_function_unchanged(host):
    raw = "Body=caf\u00e9 \u2615&x=%ZZ".encode()
    seen = echo(host, "POST", "/api/echo", body=raw, headers={"content-type": "text/plain"})
    assert seen["body"].encode() == raw
    assert "content-length" not in echo(host, "GET", "/api/echo")["headers"]


# -- the response ------------------------------------------------------------------------------


def test_response_status_headers_and_cookies(host):
    response = host.request("GET", "/api/cookies")
    assert (response.status, response.text, response.function) == (202, "cookies set", "cookies")
    assert response.headers["X-Custom"] == "yes"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    # As Azure writes them: the worker sends an absent domain/path as empty strings and the host
    # writes them out (azure-functions-python-worker#1902).
    assert response.cookies == [
        "session=abc123; expires=Wed, 21 Oct 2037 07:28:00 GMT; domain=; path=/app; secure; "
        "httponly",
        "theme=dark%20blue; max-age=3600; domain=; path=; samesite=lax",
    ]


def test_a_function_exception_is_500_with_the_workers_error_kept_for_the_test(host):
    response = host.request("GET", "/api/fails")
    assert (response.status, response.body) == (500, b"")
    assert response.error is not None
    assert response.error.startswith("ValueError: fixture failure")


def test_host_json_function_timeout_is_enforced(tmp_path):
    slow = HTTP_MAIN.replace("import azure", "import time\n\nimport azure").replace(
        "    return", "    time.sleep(0.5)\n    return")
    root = write_app(tmp_path / "app", {"slow": (HTTP_FUNCTION_JSON % "req", slow)},
                     host_json='{"version": "2.0", "functionTimeout": "00:00:00.2"}')
    with WorkerHost.start(root) as slow_host:
        response = slow_host.request("GET", "/api/slow")
    assert response.status == 500
    assert "functionTimeout" in (response.error or "")


# -- the worker's event loop -------------------------------------------------------------------


def test_async_functions_share_one_long_lived_loop_and_sync_ones_run_on_the_pool(host):
    first = host.request("POST", "/api/echo_async")
    again = host.request("POST", "/api/echo_async")
    assert (first.status, again.status) == (201, 201)
    assert again.json()["same_loop_as_first_call"] is True
    assert again.json()["thread"] == "devhost-worker-loop"
    assert threading.current_thread().name != "devhost-worker-loop"


def test_concurrent_requests_from_many_threads(host):
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(
            lambda i: host.request("POST", f"/api/echo?i={i}").status, range(40)))
    assert statuses == [200] * 40


def test_requests_after_close_are_refused(tmp_path):
    root = write_app(tmp_path / "app", {"ok": (HTTP_FUNCTION_JSON % "req", HTTP_MAIN)})
    closed = WorkerHost.start(root)
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        closed.request("GET", "/api/ok")


def test_url_for_prints_what_func_start_prints(host):
    assert host.url_for("items") == "http://localhost:7071/api/items/{id:int}/{name?}"
    assert json.loads(host.request("GET", "/api/items/7").body) == {"id": "7"}
