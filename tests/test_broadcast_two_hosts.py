"""Two instances of the app on one queue (issue 26): two `devhost.server` processes, as Flex
Consumption scaled out to two instances, drain one broadcast from the same Azurite against one
Twilio stand-in whose rate limit sits just above BROADCAST_SENDS_PER_SECOND.

With the pace kept per instance the two would create at twice the setting and meet the
stand-in's 429s; with one pace for the account (shared.broadcasts.pace) they share it. Either
way each recipient is created exactly once. The scale is small (a few chunks, seconds); the
benchmark (`scripts/bench.sh --only broadcast --broadcast-hosts 2`) measures it at full speed.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest
from conftest import run_app
from console_stack import clear_broadcast_queue

from bench.broadcast import Broadcast, Host
from bench.common import app_environ
from bench.proc import LineChild
from devhost.pytest_plugin import free_ports
from shared.broadcasts import pace

PACE = 20  # the account's creates a second (BROADCAST_SENDS_PER_SECOND)
LIMIT = 24  # the stand-in's: 429 above it, as Twilio would
RECIPIENTS = 300  # three chunks, each sent a few seconds at a time and put back in between


def test_instances_share_the_account_rate_and_a_newcomer_starts_with_what_is_left(
    leases, monkeypatch
):
    """Two instances' shares, renewal by renewal: the first takes the whole rate, the second
    starts with nothing (the first still uses it all) instead of adding to it, then they
    split it; once the first stops renewing, the second has it all."""
    now = [datetime.datetime.now(datetime.UTC)]
    monkeypatch.setattr(pace, "_now", lambda: now[0])
    first, second = pace.Share(50), pace.Share(50)

    def renew(share: pace.Share, instance: str) -> tuple[float, int]:
        monkeypatch.setattr(pace, "INSTANCE", instance)
        run_app(share.renew())
        return share.rate, share.instances

    assert renew(first, "a") == (50, 1)
    assert renew(second, "b") == (0, 2)
    assert renew(first, "a") == (25, 2)
    assert renew(second, "b") == (25, 2)
    assert renew(first, "a") == (25, 2)
    assert first.pacer.rate == pytest.approx(25 * pace.HEADROOM)  # its slots: just under it
    now[0] += datetime.timedelta(seconds=pace.LEASE + 1)  # "a" stopped renewing
    assert renew(second, "b") == (50, 1)


def test_two_hosts_share_one_queue_and_one_pace_and_send_each_recipient_once(leases, tmp_path):
    azurite = leases
    clear_broadcast_queue(azurite.connection_string)
    standin = LineChild("bench.standin", ["--delay", "0.02", "--rate", str(LIMIT)],
                        app_environ())
    # Each host takes up at most two chunks at a time (host.json's batch, overridden by app
    # settings as on Azure), so the first cannot take all three and the second takes part.
    env = app_environ(AzureWebJobsStorage=azurite.connection_string,
                      BROADCAST_SENDS_PER_SECOND=str(PACE), TWILIO_HTTP_TIMEOUT="2",
                      AzureFunctionsJobHost__extensions__queues__batchSize="2",
                      AzureFunctionsJobHost__extensions__queues__newBatchThreshold="0")
    api = f"http://127.0.0.1:{standin.port}"
    hosts = [Host(port, env, api, tmp_path / f"host{i + 1}.log")
             for i, port in enumerate(free_ports(2))]
    try:
        for host in hosts:
            host.start()
        numbers = [f"+1628555{i:04d}" for i in range(RECIPIENTS)]
        broadcast = Broadcast("sms", numbers)
        broadcast.start(hosts[0])
        assert broadcast.accepted == RECIPIENTS
        deadline = time.monotonic() + 120
        while (counts := broadcast.counts(hosts[1])) is None or counts["queued"]:
            assert time.monotonic() < deadline, counts
            time.sleep(1)
        ledger = standin.ask("ledger", timeout=30)
    finally:
        for host in hosts:
            host.stop()
        standin.close()

    assert counts == {"queued": 0, "sent": RECIPIENTS, "failed": 0, "refused": 0}
    made = ledger["sids"]
    assert sorted(made) == numbers and all(len(sids) == 1 for sids in made.values())
    logs = [Path(host.log).read_text() for host in hosts]
    assert all("outcome=chunk" in log for log in logs), "each host took up a chunk"
    assert any("pace instances=2" in log for log in logs), "the hosts saw each other's lease"
    # Each host at PACE (the pace per instance) would be twice the stand-in's LIMIT while both
    # send: hundreds of 429s. One pace for both leaves a few, at most (a newcomer's first
    # renewal, Twilio's window meeting the slots at the line).
    limited = ledger["refused"].get("429", 0) + ledger["refused"].get("429 concurrent", 0)
    assert limited <= RECIPIENTS // 20, ledger["refused"]
