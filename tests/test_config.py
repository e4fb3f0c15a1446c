"""The app's configuration files, checked against their schemas and against what the schemas miss.

The schemas come from ../shared/schemas (SchemaStore); their quirks are in ../shared/README.md:
function.json's declares draft-04 but needs Draft 7, and checks only the first item of `methods`.
What no schema sees (binding names against `main`'s parameters, duplicate routes, the methods
and auth levels Twilio and make_call rely on) is checked here with the standard library.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from devhost.appconfig import parse_timespan
from devhost.pytest_plugin import APP_ROOT, require_shared

ALL_FUNCTION_DIRS = sorted(p.parent for p in APP_ROOT.glob("*/function.json"))
QUEUE_FUNCTIONS = {"broadcast_send": "broadcast-sends", "broadcast_poison": "broadcast-sends-poison"}
TIMER_FUNCTIONS = {"idempotency_expiry": "0 */15 * * * *", "reconcile": "30 */15 * * * *",
                   "voicemail_notices": "45 */15 * * * *"}
# The HTTP-triggered ones: every check below that speaks of routes and methods is about these.
FUNCTION_DIRS = [
    d for d in ALL_FUNCTION_DIRS if d.name not in QUEUE_FUNCTIONS and d.name not in TIMER_FUNCTIONS
]
EXPECTED_FUNCTIONS = {
    "make_call",
    "send_sms",
    "voice_url",
    "sms_url",
    "call_status",
    "message_status",
    "call_flow",
    "recording_status",
    "calls",
    "messages",
    "broadcasts",
    "optouts",
    "voicemails",
    "recordings",
    "console",
    "voice_token",
    "client_voice",
}
REST_FUNCTIONS = ("make_call", "send_sms")
RECORD_READERS = ("calls", "messages")
WEBHOOKS = ("voice_url", "sms_url", "call_flow")
HTTP_VERBS = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}
# Twilio waits 15 s for a webhook answer; the host must stop a function well before that.
TWILIO_WEBHOOK_TIMEOUT = 15.0
MAX_FUNCTION_TIMEOUT = 12.0
BUNDLE_ID = "Microsoft.Azure.Functions.ExtensionBundle"
BUNDLE_RANGE = "[4.*, 5.0.0)"


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def trigger_of(function_dir: Path) -> dict[str, Any]:
    bindings = load(function_dir / "function.json")["bindings"]
    triggers = [b for b in bindings if b.get("type") == "httpTrigger"]
    assert len(triggers) == 1, f"{function_dir.name}: expected exactly one httpTrigger binding"
    return triggers[0]


def validator(shared_dir: Path, name: str) -> Draft7Validator:
    schema = load(shared_dir / "schemas" / name)
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def schema_errors(validator: Draft7Validator, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ]


def main_parameters(function_dir: Path) -> tuple[set[str], bool]:
    """(parameter names of the entry point, is it async), read with ast: nothing is imported."""
    config = load(function_dir / "function.json")
    script = function_dir / config.get("scriptFile", "__init__.py")
    entry = config.get("entryPoint") or "main"
    tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry:
            args = node.args
            names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
            return names, isinstance(node, ast.AsyncFunctionDef)
    raise AssertionError(f"{script}: no top-level {entry}() (the worker loads that name)")


def test_the_app_has_its_functions():
    assert {d.name for d in FUNCTION_DIRS} == EXPECTED_FUNCTIONS
    assert {d.name for d in ALL_FUNCTION_DIRS} == (
        EXPECTED_FUNCTIONS | set(QUEUE_FUNCTIONS) | set(TIMER_FUNCTIONS)
    )


@pytest.mark.parametrize("name", list(TIMER_FUNCTIONS))
def test_timer_functions_run_on_their_schedule_and_not_at_start(name):
    [binding] = load(APP_ROOT / name / "function.json")["bindings"]
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == TIMER_FUNCTIONS[name]
    assert binding.get("runOnStartup") is False  # a restart storm must not run it each time


@pytest.mark.parametrize("name", list(QUEUE_FUNCTIONS))
def test_queue_functions_read_their_queue_through_the_host_connection(name):
    """One queue each, on AzureWebJobsStorage (identity-based on Azure, Azurite locally)."""
    [binding] = load(APP_ROOT / name / "function.json")["bindings"]
    assert binding == {
        "type": "queueTrigger",
        "direction": "in",
        "name": "msg",
        "queueName": QUEUE_FUNCTIONS[name],
        "connection": "AzureWebJobsStorage",
    }
    assert main_parameters(APP_ROOT / name) == ({"msg"}, True)


def test_host_json_bounds_the_queue_trigger():
    """A batch small enough that one instance never runs many Twilio creates at once, a pause
    before a failed message comes back, and a poison queue after five tries."""
    queues = load(APP_ROOT / "host.json")["extensions"]["queues"]
    assert queues["batchSize"] + queues["newBatchThreshold"] <= 16
    assert queues["maxDequeueCount"] == 5
    assert queues["visibilityTimeout"] >= "00:00:05"


# -- against the schemas -------------------------------------------------------------------


@pytest.mark.parametrize("function_dir", ALL_FUNCTION_DIRS, ids=lambda d: d.name)
def test_function_json_matches_schema(shared_dir, function_dir):
    errors = schema_errors(validator(shared_dir, "function.json"),
                           load(function_dir / "function.json"))
    assert errors == []


def test_host_json_matches_schema(shared_dir):
    assert schema_errors(validator(shared_dir, "host.json"), load(APP_ROOT / "host.json")) == []


def test_local_settings_example_matches_schema(shared_dir):
    example = load(APP_ROOT / "local.settings.json.example")
    assert schema_errors(validator(shared_dir, "local.settings.json"), example) == []


def test_function_schema_catches_a_bad_binding(shared_dir):
    """Guards the Draft 7 choice: the schema must still reject something (see README quirks)."""
    bad = {"bindings": [{"type": "httpTrigger", "direction": "sideways", "name": "req"}]}
    assert schema_errors(validator(shared_dir, "function.json"), bad) != []


# -- what the schemas miss -------------------------------------------------------------------


@pytest.mark.parametrize("function_dir", FUNCTION_DIRS, ids=lambda d: d.name)
def test_methods_are_http_verbs(function_dir):
    methods = trigger_of(function_dir).get("methods") or []
    assert methods, "no methods: the host would accept every verb"
    assert [m for m in methods if m not in HTTP_VERBS] == []
    assert len(set(methods)) == len(methods), "a method is listed twice"


@pytest.mark.parametrize("function_dir", FUNCTION_DIRS, ids=lambda d: d.name)
def test_binding_names_match_main_parameters(function_dir):
    """The worker refuses to load a function whose parameters and bindings differ."""
    bindings = load(function_dir / "function.json")["bindings"]
    bound = {b["name"] for b in bindings if b["name"] != "$return"}
    parameters, _ = main_parameters(function_dir)
    assert parameters - {"context"} == bound - {"context"}


@pytest.mark.parametrize("function_dir", FUNCTION_DIRS, ids=lambda d: d.name)
def test_http_output_is_the_return_value(function_dir):
    bindings = load(function_dir / "function.json")["bindings"]
    outputs = [b for b in bindings if b.get("direction") == "out"]
    assert outputs == [{"type": "http", "direction": "out", "name": "$return"}]


def test_routes_are_unique_and_equal_to_folder_names():
    """A route is its folder's name, optionally followed by route parameters (calls/{sid?})."""
    routes = {d.name: trigger_of(d).get("route").split("/{")[0] for d in FUNCTION_DIRS}
    assert routes == {name: name for name in routes}
    lowered = [r.lower() for r in routes.values()]
    assert len(set(lowered)) == len(lowered), "routes match case-insensitively in the host"


@pytest.mark.parametrize("name", REST_FUNCTIONS)
def test_rest_functions_need_a_function_key_and_only_accept_post(name):
    trigger = trigger_of(APP_ROOT / name)
    assert trigger.get("authLevel") == "function"
    assert trigger.get("methods") == ["post"]
    assert main_parameters(APP_ROOT / name)[1], f"{name}'s main is async"


@pytest.mark.parametrize("name", WEBHOOKS)
def test_webhooks_are_anonymous_get_and_post(name):
    """Twilio sends no function key, and POSTs (or GETs, if so configured) its webhooks."""
    trigger = trigger_of(APP_ROOT / name)
    assert trigger.get("authLevel") == "anonymous"
    assert set(trigger.get("methods") or []) == {"get", "post"}


def test_host_json_route_prefix_and_extension_bundle():
    host = load(APP_ROOT / "host.json")
    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == "api"
    assert host["extensionBundle"] == {"id": BUNDLE_ID, "version": BUNDLE_RANGE}


def test_function_timeout_is_well_under_twilios_webhook_timeout():
    from shared.outbound import settings

    timeout = parse_timespan(load(APP_ROOT / "host.json")["functionTimeout"])
    assert timeout is not None, "an unlimited timeout would outlast Twilio's 15 s"
    assert timeout <= MAX_FUNCTION_TIMEOUT < TWILIO_WEBHOOK_TIMEOUT
    # make_call gives up on Twilio first, so it can still answer instead of being cut off.
    assert timeout > settings.MAX_HTTP_TIMEOUT


def test_local_settings_example_holds_placeholders_not_secrets():
    values = load(APP_ROOT / "local.settings.json.example")["Values"]
    assert all(isinstance(v, str) for v in values.values())
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    real_looking = re.compile(r"(AC|SK|MG)[0-9a-fA-F]{32}|[0-9a-fA-F]{32}")
    assert [k for k, v in values.items() if real_looking.fullmatch(v)] == []


def test_the_examples_placeholder_sid_is_named_and_the_stand_in_gets_one_made_up():
    """Copied as it is, the example's account SID is refused by name (it is no account's); with
    the local stand-in of Twilio's API (--twilio-api) the host sets one made up for the run, and
    the REST settings load as the README's stand-in walkthrough needs."""
    from devhost import settings as local_settings
    from shared.common.settings import SettingsError
    from shared.outbound import settings

    values = load(APP_ROOT / "local.settings.json.example")["Values"]
    env = values | {"PUBLIC_BASE_URL": "https://example.ngrok-free.app"}
    with pytest.raises(SettingsError, match="TWILIO_ACCOUNT_SID is malformed"):
        settings.load_call_settings(env)
    assert {k: values[k] for k in local_settings.PLACEHOLDERS} == local_settings.PLACEHOLDERS

    assert local_settings.stand_in_account(env) is True
    made_up = env["TWILIO_ACCOUNT_SID"]
    assert made_up != values["TWILIO_ACCOUNT_SID"]
    assert settings.load_call_settings(env).rest.account_sid == made_up
    assert settings.load_sms_settings(env).rest.rest_password == values["TWILIO_AUTH_TOKEN"]
    own = {"TWILIO_ACCOUNT_SID": "AC" + "1" * 32}
    assert local_settings.stand_in_account(own) is False and own == {"TWILIO_ACCOUNT_SID": "AC" + "1" * 32}


def test_dev_only_code_is_not_deployed():
    ignored = set((APP_ROOT / ".funcignore").read_text().split())
    assert {"devhost/", "tests/", "scripts/", "local.settings.json"} <= ignored


# -- the ../shared rule ------------------------------------------------------------------------


def test_absent_shared_skips_with_a_reason_outside_ci(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="is absent"):
        require_shared(tmp_path / "shared")


def test_absent_shared_fails_in_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_shared(tmp_path / "shared")


def test_shared_routes_match_host_json_and_function_json():
    """Signatures are checked for routes.path(function name): it must be the URL the host serves."""
    from shared.common import routes

    host = load(APP_ROOT / "host.json")
    assert host["extensions"]["http"]["routePrefix"] == routes.ROUTE_PREFIX
    for function_dir in FUNCTION_DIRS:
        route = trigger_of(function_dir)["route"].split("/{")[0]
        assert routes.path(function_dir.name) == f"/{routes.ROUTE_PREFIX}/{route}"


@pytest.mark.parametrize("name", RECORD_READERS)
def test_record_readers_need_a_function_key_and_only_accept_get(name):
    trigger = trigger_of(APP_ROOT / name)
    assert trigger.get("authLevel") == "function"
    assert trigger.get("methods") == ["get"]
    assert trigger.get("route") == f"{name}/{{sid?}}"
