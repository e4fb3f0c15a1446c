"""The call flow's check stamp (shared/common/stamp.py): written by the deploy's check, it lets a
new instance build a flow without judging its numbers again, and it can never let through a flow
the full check would refuse. Each read happens in a fresh interpreter, as on a new instance."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

EXAMPLE = REPO / "flows" / "calls.example.json"
POLICY_ENV = {"TWILIO_PHONE_NUMBER": "+14155550160", "CALLER_IDS": "",
              "CALL_ALLOWED_COUNTRIES": ""}

# A new instance's first read of the flow: what it built, how (the log line), and whether the
# number library, or urllib.request (about 10 ms: xml.sax.saxutils imports it), was imported on
# the way; then the full check's result, to compare with.
FIRST_READ = """
import json, logging, sys
sys.path.insert(0, sys.argv[1])
lines = []
handler = logging.Handler()
handler.emit = lambda record: lines.append(record.getMessage())
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.INFO)
from shared.callflows import loading
from shared.callflows.flow import FlowProblems
found = loading.flow(sys.argv[2])
library = "phonenumbers" in sys.modules
urllib_request = "urllib.request" in sys.modules
same = None

def fields(value):
    # The flow's parts, field by field (slotted classes), without the documents built since.
    if hasattr(type(value), "__slots__"):
        return {name: fields(getattr(value, name)) for name in type(value).__slots__
                if name != "documents"}
    if isinstance(value, dict):
        return {key: fields(item) for key, item in value.items()}
    return value

if not isinstance(found, FlowProblems):
    full = loading.read(sys.argv[2], loading._policy())
    same = fields(found) == fields(full)
print(json.dumps({"refused": isinstance(found, FlowProblems), "log": lines,
                  "phonenumbers": library, "urllib.request": urllib_request,
                  "same_as_full_check": same}))
"""


@pytest.fixture
def flows() -> Iterator[Path]:
    """A folder inside the app (a flow file must be: CALL_FLOW is relative to the app root),
    removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=".test-flows-", dir=REPO))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def env(**changes: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", **POLICY_ENV, **changes}


def check_and_stamp(flow: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/check_flow.py", "--stamp", str(flow.relative_to(REPO))],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=env(),
    )


def first_read(flow: Path, **settings: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", FIRST_READ, str(REPO), str(flow.relative_to(REPO))],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=env(**settings),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stamped_example(flows: Path) -> Path:
    flow = flows / "calls.json"
    shutil.copy(EXAMPLE, flow)
    result = check_and_stamp(flow)
    assert result.returncode == 0, result.stderr
    assert "stamped:" in result.stdout
    return flow


def test_a_stamped_flow_is_built_without_the_number_library(flows):
    flow = stamped_example(flows)

    read = first_read(flow)

    assert not read["refused"]
    assert any("checked by its stamp" in line for line in read["log"]), read["log"]
    assert read["phonenumbers"] is False
    assert read["urllib.request"] is False
    assert read["same_as_full_check"] is True


def test_without_a_stamp_the_flow_is_checked_in_full(flows):
    flow = flows / "calls.json"
    shutil.copy(EXAMPLE, flow)

    read = first_read(flow)

    assert not read["refused"]
    assert any("checked in full (no stamp)" in line for line in read["log"]), read["log"]
    assert read["phonenumbers"] is True


def test_a_stamp_that_cannot_be_written_is_said_so_without_a_traceback(flows):
    flow = flows / "calls.json"
    shutil.copy(EXAMPLE, flow)
    (flows / "calls.json.checked").mkdir()  # its place is taken by a folder

    result = check_and_stamp(flow)

    assert result.returncode == 1
    assert "error: cannot write" in result.stderr and "calls.json.checked" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_deploy_checks_a_flow_named_like_an_option_as_a_file(flows):
    """prepackage passed CALL_FLOW to the check as an argument: "--help" printed the help and
    exited 0, so the deploy went on with no check and no stamp (an attack run's)."""
    result = subprocess.run(
        [sys.executable, "scripts/prepackage.py"], cwd=REPO, capture_output=True, text=True,
        timeout=120, env=env(CALL_FLOW="--help"),
    )

    assert result.returncode == 1, result.stdout
    assert "no file '--help' in the app" in result.stderr
    assert "usage:" not in result.stdout + result.stderr


def test_a_refused_flow_gets_no_stamp(flows):
    flow = flows / "bad.json"
    bad = json.loads(EXAMPLE.read_text())
    bad["steps"]["sales"]["dial"]["to"] = ["+19005550100"]
    flow.write_text(json.dumps(bad))

    result = check_and_stamp(flow)

    assert result.returncode == 1
    assert not (flows / "bad.json.checked").exists()


def test_a_flow_edited_after_its_stamp_is_checked_in_full_and_refused(flows):
    flow = stamped_example(flows)
    edited = json.loads(flow.read_text())
    edited["steps"]["sales"]["dial"]["to"] = ["+19005550100"]  # premium rate
    flow.write_text(json.dumps(edited))

    read = first_read(flow)

    assert read["refused"]
    assert any("premium-rate" in line for line in read["log"]), read["log"]


def test_other_policy_settings_than_the_stamps_check_the_flow_in_full(flows):
    flow = stamped_example(flows)

    read = first_read(flow, CALL_ALLOWED_COUNTRIES="CA")  # the flow dials US numbers

    assert read["refused"]
    assert any("not allowed" in line for line in read["log"]), read["log"]


@pytest.mark.parametrize(("tamper", "reason"), [
    (lambda s: s["code"]["files"].update({"shared/callflows/flow.py": "0" * 64}),
     "shared/callflows/flow.py differs from the code that stamped the flow"),
    (lambda s: s["code"]["files"].update({"../outside.py": "0" * 64}), "differs from the code"),
    (lambda s: s["code"]["libraries"].update({"phonenumbers": "0" * 64}),
     "phonenumbers differs from the version that stamped the flow"),
    (lambda s: s["code"].update({"files": {}}), "the stamp names no code"),
    (lambda s: s.update({"format": 0}), "the stamp is of another format"),
    # Cut down by hand to a file that still matches: it would vouch for a flow whatever the
    # check and the number policy say (an attack run's).
    (lambda s: s["code"].update({"files": {"shared/__init__.py":
                                           s["code"]["files"]["shared/__init__.py"]}}),
     "the stamp does not name the code that judges the flow"),
], ids=["app-code", "outside-the-app", "phonenumbers", "no-code", "format", "cut-down"])
def test_a_stamp_for_other_code_is_ignored(flows, tamper, reason):
    flow = stamped_example(flows)
    stamp_file = flows / "calls.json.checked"
    stamp = json.loads(stamp_file.read_text())
    tamper(stamp)
    stamp_file.write_text(json.dumps(stamp))

    read = first_read(flow)

    assert not read["refused"]
    assert any("checked in full (" in line and reason in line for line in read["log"]), read["log"]
    assert read["phonenumbers"] is True


@pytest.mark.parametrize("junk", [b"\xff not json", b"[" * 200_000 + b"]" * 200_000],
                         ids=["not-json", "nested-too-deep"])
def test_an_unreadable_stamp_is_ignored(flows, junk):
    """Never a reason to refuse a good flow (a stamp nested too deep raised RecursionError, and
    the flow was refused: an attack run's)."""
    flow = stamped_example(flows)
    (flows / "calls.json.checked").write_bytes(junk)

    read = first_read(flow)

    assert any("checked in full (the stamp is unreadable)" in line for line in read["log"])


# A new instance's first inbound call with a stamped flow: every function folder loaded, then
# voice_url answering; which of the app's modules made a NamedTuple class on the way.
FIRST_CALL = """
import asyncio, collections, importlib, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
made = []
real = collections.namedtuple
def recording(*args, module=None, **kwargs):  # typing.NamedTuple makes its classes through this
    made.append(module or sys._getframe(1).f_globals.get("__name__", "?"))
    return real(*args, module=module, **kwargs)
collections.namedtuple = recording
folders = sorted(p.parent.name for p in Path(sys.argv[1]).glob("*/function.json"))
for folder in folders:
    importlib.import_module(folder)
import azure.functions as func
call = json.loads(sys.argv[2])
req = func.HttpRequest("POST", call["url"], headers=call["headers"], body=call["body"].encode())
response = asyncio.run(sys.modules["voice_url"].main(req))
app = ("shared", *folders)
print(json.dumps({"folders": len(folders), "status": response.status_code,
                  "twiml": response.get_body().decode(),
                  "made": sorted({m for m in made if m.split(".")[0] in app})}))
"""


def test_a_call_webhooks_first_call_makes_no_namedtuple_class(flows):
    """typing.NamedTuple compiles code for each class it makes, about 0.14 ms a class on a new
    instance: the records on a call webhook's path (its settings, the signature's verdict, the
    request, the flow's parts) are plain slotted classes (docs/benchmark.md, cold start), and
    loading every function then answering a call that walks a flow makes none."""
    from urllib.parse import urlencode

    from conftest import ACCOUNT_SID, AUTH_TOKEN, TWILIO_NUMBER, signature

    flow = stamped_example(flows)
    url = "https://myapp.azurewebsites.net/api/voice_url"
    params = {"CallSid": "CA" + "3" * 32, "AccountSid": ACCOUNT_SID, "From": "+14155550111",
              "To": TWILIO_NUMBER, "CallStatus": "ringing", "ApiVersion": "2010-04-01",
              "Direction": "inbound"}
    call = {"url": url, "body": urlencode(params),
            "headers": {"Content-Type": "application/x-www-form-urlencoded",
                        "X-Twilio-Signature": signature(url, params)}}
    result = subprocess.run(
        [sys.executable, "-c", FIRST_CALL, str(REPO), json.dumps(call)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env=env(TWILIO_AUTH_TOKEN=AUTH_TOKEN, PUBLIC_BASE_URL="https://myapp.azurewebsites.net",
                CALL_FLOW=str(flow.relative_to(REPO))),
    )
    assert result.returncode == 0, result.stderr
    first = json.loads(result.stdout)

    assert first["folders"] >= 20
    assert first["status"] == 200
    assert "<Gather" in first["twiml"]  # the flow's menu: the call walked it
    assert first["made"] == []
