"""Queue-triggered functions through the real worker, with the host's queue extension played by
devhost.queues against a real queue service (Azurite).

The fixture app (tests/fixtures/queue_app) records every QueueMessage it gets; its host.json
shortens the extension's timings (poll at most every 200 ms, retry after 1 s, poison on the 2nd
failure, batchSize 2 + newBatchThreshold 1). What is checked is the extension's part: a message
delivered once and deleted, the QueueMessage fields the worker builds from the trigger metadata,
release with visibilityTimeout and then `<queue>-poison`, the concurrency bound, and a clean stop.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import server_command

from devhost import appconfig, queues
from devhost.appconfig import AppConfigError, QueuesOptions, read_queues_options
from devhost.queues import DELETED, POISONED, RELEASED, QueueConfigError, QueuePoller
from devhost.worker_host import QueueMessageData, WorkerHost

FIXTURE_APP = Path(__file__).parent / "fixtures" / "queue_app"
REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def host():
    with WorkerHost.start(FIXTURE_APP) as started:
        yield started


class QueueEnv:
    """One test's queue (and its poison queue) on Azurite, and the fixture app's record log."""

    def __init__(self, connection_string: str, name: str, log: Path) -> None:
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        self.name = name
        self.poison_name = f"{name}-poison"
        self.log = log
        self.connection_string = connection_string
        # base64 text, the extension's default messageEncoding (this fixture app keeps it).
        self.client = QueueClient.from_connection_string(
            connection_string, name, message_encode_policy=TextBase64EncodePolicy())
        self.raw = QueueClient.from_connection_string(connection_string, name)
        self.poison = QueueClient.from_connection_string(connection_string, self.poison_name)

    def send(self, body: Any) -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        return self.client.send_message(text).id

    def entries(self, function: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [e for e in lines if function is None or e["function"] == function]

    def remaining(self, client: Any = None) -> int:
        """Messages still in the queue, hidden ones included."""
        return (client or self.raw).get_queue_properties().approximate_message_count

    def close(self) -> None:
        for client in (self.client, self.raw, self.poison):
            client.close()


@pytest.fixture
def queue_env(azurite_storage, monkeypatch, tmp_path, request):
    """A fresh queue per test (QUEUE_APP_QUEUE, which the fixture's queueName reads) on the
    session's Azurite, and the record log (QUEUE_APP_LOG); the queue is created, as a sender
    would (the listener waits for a missing queue, it does not create it)."""
    stem = re.sub(r"[^a-z0-9]", "", request.node.name.lower())[:30]
    name = f"q{stem}{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("QUEUE_APP_QUEUE", name)
    monkeypatch.setenv("QUEUE_APP_LOG", str(tmp_path / "record.jsonl"))
    env = QueueEnv(azurite_storage.connection_string, name, tmp_path / "record.jsonl")
    env.raw.create_queue()
    yield env
    env.close()


@pytest.fixture
def poller(host, queue_env):
    started = host.start_queues()
    yield started
    started.stop()


def wait_until(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- host.json and function.json, as the host reads them --------------------------------------


def test_host_json_queue_defaults_are_the_extensions():
    defaults = read_queues_options({"version": "2.0"})
    assert defaults == QueuesOptions()
    assert (defaults.batch_size, defaults.new_batch_threshold, defaults.max_dequeue_count,
            defaults.visibility_timeout, defaults.max_polling_interval,
            defaults.message_encoding) == (16, 8, 5, 0.0, 60.0, "base64")
    assert defaults.max_concurrency == 24
    # Locally (the Development environment, as under func start) an unset maxPollingInterval is
    # 2 s; one set in host.json wins everywhere.
    assert defaults.polling_interval_limit(development=True) == 2.0
    assert defaults.polling_interval_limit(development=False) == 60.0
    threshold = read_queues_options({"extensions": {"queues": {"batchSize": 6}}})
    assert threshold.new_batch_threshold == 3


def test_the_fixture_apps_host_json_is_read_with_its_queue_options(host):
    options = host.config.queues
    assert (options.batch_size, options.new_batch_threshold, options.max_dequeue_count,
            options.visibility_timeout, options.max_polling_interval) == (2, 1, 2, 1.0, 0.2)
    assert options.polling_interval_limit() == 0.2
    trigger = host.functions["record"].queue_trigger
    assert trigger is not None
    assert (trigger.param_name, trigger.queue_name, trigger.connection) == (
        "msg", "%QUEUE_APP_QUEUE%", "AzureWebJobsStorage")
    assert host.functions["record"].trigger is None  # no HTTP route
    assert [f.name for f in host.queue_functions] == ["record", "record_poison"]


def test_app_settings_override_host_json_as_on_azure():
    """AzureFunctionsJobHost__<path> overrides host.json's value at that path, names matched
    without regard to case; other settings are left alone."""
    from devhost.appconfig import read_queues_options, with_overrides

    host_json = {"extensions": {"queues": {"batchSize": 12, "newBatchThreshold": 4}}}
    merged = with_overrides(host_json, {
        "AzureFunctionsJobHost__extensions__queues__batchSize": "2",
        "azurefunctionsjobhost__Extensions__Queues__maxDequeueCount": "3",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    })
    options = read_queues_options(merged)
    assert (options.batch_size, options.new_batch_threshold, options.max_dequeue_count) == (
        2, 4, 3)


@pytest.mark.parametrize(("queues_section", "message"), [
    ({"batchSize": 33}, "batchSize is 33; it must be 1 to 32"),
    ({"batchSize": 0}, "batchSize is 0; it must be 1 to 32"),
    ({"newBatchThreshold": -1}, "newBatchThreshold is -1; it must be at least 0"),
    ({"maxDequeueCount": 0}, "maxDequeueCount is 0; it must be at least 1"),
    ({"maxPollingInterval": "00:00:00.050"}, "must not be less than 00:00:00.1"),
    ({"maxPollingInterval": 2000}, "must be a TimeSpan string"),
    ({"visibilityTimeout": "soon"}, "visibilityTimeout 'soon' is not hh:mm:ss"),
    ({"messageEncoding": "utf8"}, "is not base64 or none"),
    ({"batchSize": "many"}, "batchSize 'many' is not an integer"),
])
def test_host_json_queue_options_out_of_range_are_refused(queues_section, message):
    with pytest.raises(AppConfigError, match=re.escape(message)):
        read_queues_options({"extensions": {"queues": queues_section}})


def test_an_invalid_queue_name_fails_like_the_host(tmp_path):
    (tmp_path / "host.json").write_text('{"version": "2.0"}')
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "function.json").write_text(json.dumps({"bindings": [
        {"type": "queueTrigger", "direction": "in", "name": "msg", "queueName": "a--b"}]}))
    with pytest.raises(AppConfigError, match="queueName 'a--b' is not a valid queue name"):
        appconfig.read_app(tmp_path)
    assert appconfig.poison_queue_name("work") == "work-poison"
    assert appconfig.poison_queue_name("work-poison") is None  # no poison queue of its own
    assert appconfig.poison_queue_name("w" * 57) is None  # "-poison" would pass 63 characters


# -- the invocation, as the host sends it (no storage needed) ---------------------------------


def test_the_worker_builds_a_queue_message_from_the_hosts_trigger_metadata(host, tmp_path,
                                                                          monkeypatch):
    log = tmp_path / "record.jsonl"
    monkeypatch.setenv("QUEUE_APP_LOG", str(log))
    inserted = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    message = QueueMessageData(
        id="6d6f3c2e-0000-4000-8000-000000000001", body=b'{"to": "+14155550111"}',
        dequeue_count=3, insertion_time=inserted, expiration_time=inserted + timedelta(days=7),
        next_visible_time=inserted + timedelta(minutes=10), pop_receipt="AgAAAAMAAAAAAAAA",
    )
    result = host.invoke_queue("record", message)
    assert result.succeeded, result.error
    [entry] = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["type"] == "QueueMessage"
    assert entry["id"] == message.id
    assert entry["dequeue_count"] == 3
    assert entry["insertion_time"] == "2024-05-01T12:00:00+00:00"
    assert entry["expiration_time"] == "2024-05-08T12:00:00+00:00"
    assert entry["time_next_visible"] == "2024-05-01T12:10:00+00:00"
    assert entry["pop_receipt"] == "AgAAAAMAAAAAAAAA"
    assert entry["body"] == '{"to": "+14155550111"}'
    assert entry["json"] == {"to": "+14155550111"}

    # The kinds the host's ToRpc gives them: strings as string, a long and times as JSON.
    metadata = host.queue_trigger_metadata(host.functions["record"], message)
    kinds = {key: value.WhichOneof("data") for key, value in metadata.items()}
    assert kinds == {"QueueTrigger": "string", "DequeueCount": "json", "ExpirationTime": "json",
                     "Id": "string", "InsertionTime": "json", "NextVisibleTime": "json",
                     "PopReceipt": "string", "sys": "json", "to": "string"}
    assert metadata["DequeueCount"].json == "3"
    assert metadata["InsertionTime"].json == '"2024-05-01T12:00:00+00:00"'


def test_a_json_body_with_an_id_replaces_the_message_id_as_in_azure(host, tmp_path, monkeypatch):
    """The host adds a JSON body's top-level properties to the binding data, over the built-in
    names (azure-functions-python-worker#1373): msg.id is the body's id."""
    monkeypatch.setenv("QUEUE_APP_LOG", str(tmp_path / "record.jsonl"))
    result = host.invoke_queue("record", QueueMessageData(id="real", body=b'{"id": "from-body"}'))
    assert result.succeeded, result.error
    assert json.loads((tmp_path / "record.jsonl").read_text())["id"] == "from-body"


def test_an_exception_in_the_function_is_a_failed_invocation(host, tmp_path, monkeypatch):
    monkeypatch.setenv("QUEUE_APP_LOG", str(tmp_path / "record.jsonl"))
    result = host.invoke_queue("record", QueueMessageData(id="m", body=b'{"fail": true}'))
    assert not result.succeeded
    assert "RuntimeError: asked to fail (dequeue count 1)" in (result.error or "")


# -- the listener, against Azurite ------------------------------------------------------------


def test_a_message_is_delivered_once_and_deleted(poller, queue_env):
    message_id = queue_env.send({"hello": "world"})
    [outcome] = poller.wait_for(1, function="record")
    assert (outcome.action, outcome.message_id, outcome.dequeue_count) == (DELETED, message_id, 1)
    [entry] = queue_env.entries()
    assert (entry["id"], entry["dequeue_count"], entry["json"]) == (message_id, 1, {"hello": "world"})
    assert entry["body"] == '{"hello": "world"}'  # base64 undone, as the extension does
    assert datetime.fromisoformat(entry["insertion_time"]) <= datetime.now(UTC)
    assert entry["pop_receipt"]
    assert queue_env.remaining() == 0
    time.sleep(0.5)  # a few more polls: nothing is delivered again
    assert len(queue_env.entries()) == 1
    assert len(poller.outcomes) == 1


def test_a_failing_message_is_retried_after_visibility_timeout_then_poisoned(poller, queue_env):
    message_id = queue_env.send({"fail": True})
    outcomes = poller.wait_for(1, function="record", action=POISONED)
    poisoned = poller.wait_for(1, function="record_poison", action=DELETED)
    attempts = [o for o in poller.outcomes if o.function == "record"]
    assert [(o.action, o.dequeue_count) for o in attempts] == [(RELEASED, 1), (POISONED, 2)]
    assert "asked to fail" in (outcomes[0].error or "")
    first, second = queue_env.entries("record")
    assert (first["id"], second["id"]) == (message_id, message_id)
    assert (first["dequeue_count"], second["dequeue_count"]) == (1, 2)
    # Released with host.json's visibilityTimeout (1 s): the retry does not come sooner.
    assert second["started"] - first["ended"] >= 0.9
    # <queue>-poison got the same body (the poison queue created on the way), and its own
    # function ran on it at once; the original queue is empty and nothing runs again.
    [landed] = queue_env.entries("record_poison")
    assert landed["json"] == {"fail": True}
    assert landed["id"] == poisoned[0].message_id != message_id
    assert queue_env.remaining() == 0
    assert queue_env.remaining(queue_env.poison) == 0
    time.sleep(1.2)
    assert len(queue_env.entries("record")) == 2


def test_a_message_that_is_not_base64_goes_straight_to_the_poison_queue(poller, queue_env):
    queue_env.raw.send_message("not base64!")
    [outcome] = poller.wait_for(1, function="record", action=POISONED)
    assert not outcome.invoked
    [landed] = poller.wait_for(1, function="record_poison")
    # The poison function's listener decodes base64 too: the raw text fails there as well, and
    # a poison queue has no poison queue of its own, so it stays hidden (not deleted).
    assert (landed.action, landed.invoked) == (queues.KEPT, False)
    assert queue_env.entries() == []


def test_concurrency_is_bounded_by_batch_size_plus_new_batch_threshold(poller, queue_env, host):
    for index in range(7):
        queue_env.send({"sleep": 0.25 if index % 2 == 0 else 0.6, "index": index})
    poller.wait_for(7, function="record", action=DELETED)
    entries = queue_env.entries("record")
    events = sorted([(e["started"], 1) for e in entries] + [(e["ended"], -1) for e in entries])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    bound = host.config.queues.max_concurrency  # 2 + 1
    assert peak <= bound
    assert peak > host.config.queues.batch_size  # a new batch came at newBatchThreshold


def test_a_long_invocation_keeps_its_message_hidden(host, queue_env):
    """The processing visibility is renewed at half-time: a message that runs longer than it is
    not delivered a second time meanwhile (here 2 s instead of the extension's 10 min)."""
    poller = host.start_queues(functions=["record"], processing_visibility_timeout=2)
    try:
        queue_env.send({"sleep": 2.6})
        [outcome] = poller.wait_for(1, function="record", timeout=15)
        assert outcome.action == DELETED
        # Without renewal it would have reappeared at 2 s and be running a second time now.
        wait_until(lambda: poller.in_flight == 0, 5, "no message in flight")
        assert len(poller.outcomes) == 1
        assert len(queue_env.entries()) == 1
        assert queue_env.remaining() == 0
    finally:
        poller.stop()


def test_a_missing_queue_is_waited_for_not_created(host, queue_env):
    queue_env.raw.delete_queue()
    poller = host.start_queues(functions=["record"])
    try:
        time.sleep(0.4)
        from azure.core.exceptions import ResourceNotFoundError

        with pytest.raises(ResourceNotFoundError):
            queue_env.raw.get_queue_properties()
        queue_env.raw.create_queue()
        message_id = queue_env.send("late")
        [outcome] = poller.wait_for(1, function="record")
        assert (outcome.action, outcome.message_id) == (DELETED, message_id)
    finally:
        poller.stop()


def test_the_listener_stops_on_close_after_its_messages_finish(start_worker_host, queue_env):
    host = start_worker_host(FIXTURE_APP)
    poller = host.start_queues(functions=["record"])
    assert poller.running
    assert "devhost-queues" in {t.name for t in threading.enumerate()}
    queue_env.send({"sleep": 0.5})
    wait_until(lambda: poller.in_flight == 1, 5, "the message to be in flight")
    began = time.monotonic()
    host.close()
    assert time.monotonic() - began < 5
    assert queue_env.entries()  # it ran to its end before the listener stopped
    assert not poller.running
    assert "devhost-queues" not in {t.name for t in threading.enumerate()}
    assert [o.action for o in poller.outcomes] == [DELETED]  # finished, then stopped


def test_a_missing_connection_setting_is_named_like_the_host_names_it(host, queue_env,
                                                                     monkeypatch):
    monkeypatch.delenv("AzureWebJobsStorage")
    with pytest.raises(QueueConfigError) as raised:
        host.start_queues()
    assert raised.value.errors == {
        name: "Storage account connection string 'AzureWebJobsStorage' does not exist. Make "
              "sure that it is a defined App Setting."
        for name in ("record", "record_poison")
    }
    lenient = QueuePoller(host).start(strict=False)
    assert set(lenient.errors) == {"record", "record_poison"}
    assert not lenient.running


def test_use_development_storage_means_azurites_default_account():
    from shared.records.settings import DEVELOPMENT_STORAGE

    assert queues.resolve_connection("Storage", {"AzureWebJobsStorage":
                                                 "UseDevelopmentStorage=true"}) == (
        "AzureWebJobsStorage", DEVELOPMENT_STORAGE)
    assert queues.resolve_queue_name("%Q%-Poison", {"Q": "Work"}) == "work-poison"


def test_the_server_command_polls_the_queues(queue_env, tmp_path):
    with server_command("--app-root", str(FIXTURE_APP)) as (output, _, process):
        assert (f"Queue triggers (storage from AzureWebJobsStorage): record <- {queue_env.name} "
                f"(poison: {queue_env.poison_name}), record_poison <- {queue_env.poison_name} "
                "(no poison queue)") in output
        message_id = queue_env.send({"via": "server"})
        wait_until(lambda: queue_env.entries(), 10, "the server's listener to run the message")
        assert queue_env.entries()[0]["id"] == message_id
        process.terminate()
        rest, _ = process.communicate(timeout=15)
        assert process.returncode == 0, output + rest
        assert "Stopping." in rest


def test_a_second_stop_signal_while_stopping_does_not_cut_it_short(capsys, monkeypatch):
    """Ctrl+C pressed twice (or SIGTERM after it): the first stops the host; the second, which
    lands while the queue listeners drain, is answered with a line instead of a
    KeyboardInterrupt traceback out of the drain."""
    from devhost import server

    monkeypatch.setattr(server, "_stopping_since", [])
    before = {each: signal.getsignal(each) for each in server._STOP_SIGNALS}
    try:
        for each in server._STOP_SIGNALS:  # as the server sets them once it is ready
            signal.signal(each, server._stop)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)  # SIGINT too, unless this run ignores it
        try:
            signal.raise_signal(signal.SIGTERM)  # the same stop, passed on by scripts/start.sh
            assert capsys.readouterr().err == ""  # within a second: nothing to say
            server._stopping_since[0] -= 2  # pressed again later
            for each in server._STOP_SIGNALS:
                signal.raise_signal(each)
        except KeyboardInterrupt:
            pytest.fail("a stop signal while stopping raised KeyboardInterrupt")
    finally:
        for each, handler in before.items():
            signal.signal(each, handler)

    assert capsys.readouterr().err.count("Still stopping") == len(server._STOP_SIGNALS)


def test_no_queues_flag_is_parsed():
    from devhost.server import _parse_args

    assert _parse_args(["--no-queues"]).no_queues
    assert not _parse_args([]).no_queues


def test_the_real_apps_queue_triggers_listen_on_their_queues(worker_host, azurite_storage):
    poller = worker_host.start_queues()
    try:
        assert poller.describe() == (
            "broadcast_poison <- broadcast-sends-poison (no poison queue), "
            "broadcast_send <- broadcast-sends (poison: broadcast-sends-poison)")
        assert poller.running
    finally:
        poller.stop()
    assert not poller.running


def test_the_start_up_listing_names_each_queue_trigger_and_its_queue(worker_host):
    from devhost.server import describe_functions

    lines = describe_functions(worker_host, "http://localhost:7071")

    assert "\tbroadcast_send: queueTrigger broadcast-sends" in lines
    assert "\tbroadcast_poison: queueTrigger broadcast-sends-poison" in lines
    assert "\tmake_call: [POST] http://localhost:7071/api/make_call" in lines


def test_processing_visibility_is_parsed_and_bounded(capsys):
    from devhost.server import _parse_args

    assert _parse_args(["--processing-visibility", "20"]).processing_visibility == 20.0
    assert _parse_args([]).processing_visibility is None
    with pytest.raises(SystemExit):
        _parse_args(["--processing-visibility", "0"])
