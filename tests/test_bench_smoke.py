"""A quick check that `python -m bench` still works: each moving part once, with tiny counts.

The benchmark itself takes minutes and is run by hand (scripts/bench.sh); this keeps its parts
from rotting between runs: the floor app loads through the worker host, the cold-start child
answers, the Twilio stand-in speaks HTTP/1.1 keep-alive and counts connections, and the served
bootstrap really sends make_call to the stand-in (and not before the first call imports
twilio.rest). A few seconds in all.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re

import pytest

from bench import cold, compare, concurrency, first_request
from bench.common import APP_ROOT, FLOOR_ROOT, FUNCTION_KEY, app_environ, signed_webhook
from bench.proc import LineChild
from bench.stats import Check, percentile


def test_percentile_is_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_a_check_says_by_how_much_a_target_is_missed() -> None:
    assert Check("x", 1.0, 1.25).met
    missed = Check("x", 1.5, 1.25)
    assert not missed.met
    assert "over by 20.0 %" in missed.line()
    assert Check("y", True, True).met and not Check("y", False, True).met


def test_the_floor_app_answers_through_the_worker_host(start_worker_host) -> None:
    host = start_worker_host(FLOOR_ROOT)
    response = host.request("POST", "/api/floor", body=b"a=1")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert b"<Say>Hello Monkey!</Say>" in response.body


def test_a_cold_start_child_serves_one_signed_voice_webhook(tmp_path) -> None:
    case = cold.BytecodeCase("smoke", tmp_path / "pyc", write=True)
    run = cold.one_run(APP_ROOT, signed_webhook("voice"), case)
    assert run.functions == [
        "broadcast_poison", "broadcast_send", "broadcasts", "call_flow", "call_status", "calls",
        "client_voice", "console", "idempotency_expiry", "make_call",
        "message_status", "messages", "optouts", "reconcile", "recording_status", "recordings",
        "send_sms", "sms_url", "voice_token", "voice_url", "voicemail_notices", "voicemails",
    ]
    assert run.modules == []  # no twilio.rest, aiohttp or phonenumbers for a webhook
    assert 0 < run.interpreter < run.total
    assert run.cpu > 0  # the child's own CPU time, as the kernel counts it


def test_compare_alternates_two_checkouts_and_the_floor(capsys, tmp_path) -> None:
    for case in ([], ["--package-bytecode"], ["--floor-like-app"]):
        assert compare.main([str(APP_ROOT), "--rounds", "1", *case]) == 0
        out = capsys.readouterr().out
        for side in ("this", "other", "floor"):
            assert f"  {side} " in out
        assert "CPU, median of other - this per round:" in out
        functions = len(list(APP_ROOT.glob("*/function.json")))
        assert (f"floor: {functions} functions, like this app's" in out) == (
            "--floor-like-app" in case)
    with pytest.raises(SystemExit) as refused:  # not a checkout of this app
        compare.main([str(tmp_path)])
    assert refused.value.code == 2


def test_the_standin_keeps_connections_alive_and_counts_them() -> None:
    with LineChild("bench.standin", ["--delay", "0"], app_environ()) as standin:
        connection = http.client.HTTPConnection("127.0.0.1", standin.port, timeout=5)
        path = "/2010-04-01/Accounts/AC" + "b" * 32 + "/Calls.json"
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        for _ in range(2):
            connection.request("POST", path, body="To=%2B14155550123&From=%2B14155550100",
                               headers=headers)
            response = connection.getresponse()
            call = json.loads(response.read())
            assert response.status == 201
            assert call["sid"].startswith("CA") and call["to"] == "+14155550123"
        connection.request("GET", "/nowhere")
        response = connection.getresponse()
        assert response.status == 404 and json.loads(response.read())["code"] == 20404
        connection.close()
        assert standin.ask("stats")["connections"] == 1
        assert standin.ask("stats")["requests"] == 3


def test_the_served_bootstrap_sends_make_call_to_the_standin() -> None:
    with LineChild("bench.standin", [], app_environ()) as standin:
        env = app_environ(BENCH_TWILIO_API=f"http://127.0.0.1:{standin.port}",
                          BENCH_FUNCTION_KEY=FUNCTION_KEY)
        with LineChild("bench.served", [], env) as served:
            keyless = asyncio.run(concurrency.http_request(
                served.port, "POST", "/api/make_call", {"Content-Type": "application/json"},
                b'{"to": "+14155550123"}'))
            assert keyless.status == 401  # the function key is enforced, as on Azure
            result = asyncio.run(concurrency.measure_served(served, standin, 3, 1))
    assert not result.modules_before["twilio.rest"] and not result.modules_before["aiohttp"]
    assert not result.modules_after_webhooks["aiohttp"]
    assert result.modules_after_call["twilio.rest"] and result.modules_after_call["aiohttp"]
    assert result.connections_first == result.connections_second == 1
    assert result.one_call >= 0.1  # every call waited on the stand-in's 100 ms


def test_the_package_size_counts_the_files_funcignore_keeps_and_no_others() -> None:
    from bench import package

    kept = {p.relative_to(APP_ROOT).as_posix() for p in package.app_files()}

    assert {"host.json", "requirements.txt", "make_call/function.json", "shared/common/settings.py",
            "flows/calls.example.json"} <= kept  # a call flow is read from the package
    for dropped in ("tests/", "devhost/", "bench/", "scripts/", "infra/", ".venv/", ".git/"):
        assert not any(path.startswith(dropped) for path in kept), dropped
    assert not any(path.endswith(".md") for path in kept)
    # The app's bytecode ships (scripts/prepackage.py compiles it), no one else's.
    code = ("shared/", *(f"{p.parent.name}/" for p in APP_ROOT.glob("*/function.json")))
    assert all(path.startswith(code) for path in kept if "__pycache__" in path)
    assert "requirements-dev.txt" not in kept and "local.settings.json" not in kept


def test_the_broadcast_scenarios_sustained_rate_leaves_out_the_outage_and_the_tail() -> None:
    from bench.broadcast import _sustained_rate

    steady = [i / 10 for i in range(100)]  # 10 a second for 10 s
    after = [20 + i / 10 for i in range(100)]  # the host down from 10 s to 20 s
    tail = [60.0, 90.0, 120.0, 150.0, 180.0]  # retries long after
    rate = _sustained_rate(steady + after + tail, killed_at=10.0)
    assert 9.5 <= rate <= 10.5
    assert _sustained_rate(steady, killed_at=None) == pytest.approx(10, rel=0.02)


def test_the_broadcast_phase_is_a_phase_with_its_own_options() -> None:
    from bench.__main__ import PHASES, parse_args

    assert "broadcast" in PHASES
    args = parse_args(["--only", "broadcast", "--broadcast-sms", "200", "--broadcast-rate", "50"])
    assert (args.broadcast_sms, args.broadcast_calls, args.broadcast_rate) == (200, 1000, 50.0)
    with pytest.raises(SystemExit):
        parse_args(["--broadcast-rate", "0"])


def test_first_request_orders_a_package_before_its_modules() -> None:
    importtime = "\n".join([
        "import time:       900 |       900 |   devhost.worker_host",  # loading: not counted
        first_request.MARK,
        "some log line of the host",
        "import time:       300 |       300 |     sysconfig",
        "import time:       200 |       200 |   zoneinfo._tzpath",
        "import time:       100 |       600 | zoneinfo",
        "import time:        50 |        50 | shared.callflows.flow",
    ])
    assert first_request.imported_after_mark(importtime) == [
        "sysconfig", "zoneinfo", "zoneinfo._tzpath", "shared.callflows.flow"]
    with pytest.raises(RuntimeError, match="never finished loading"):
        first_request.imported_after_mark("import time:   1 |   1 | x")


@pytest.mark.parametrize("flow", [None, "flows/calls.example.json"])
def test_first_request_times_each_module_voice_url_imports_on_first_use(capsys, flow) -> None:
    assert first_request.main(["--runs", "1", *(["--call-flow", flow] if flow else [])]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^ +[0-9.]+ (?:ms|µs)  (\S+)", out, re.MULTILINE)
    assert "twilio.twiml.voice_response" in listed
    assert ("shared.callflows.flow" in listed) == bool(flow)
    assert ("zoneinfo" in listed) == bool(flow)  # only a flow with hours needs it
    assert not [m for m in listed if m.startswith(("twilio.rest", "phonenumbers", "azure."))]
    assert "first request, its imports done:" in out


def test_first_request_of_sms_url_lists_the_storage_libraries_it_loads(capsys) -> None:
    assert first_request.main(["--runs", "1", "--webhook", "sms_url"]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^ +[0-9.]+ (?:ms|µs)  (\S+)", out, re.MULTILINE)
    assert "sms_url's first request" in out
    assert {"aiohttp", "azure.data.tables"} <= set(listed)
    assert "twilio.twiml.messaging_response" in out  # listed, or imported with its package
