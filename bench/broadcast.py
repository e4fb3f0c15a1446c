"""Broadcasts at scale: 10,000 texts and 1,000 calls through the local host, Azurite and a Twilio
stand-in that limits, fails and times out, with the host killed once mid-run and restarted.

What it proves is the never-twice, never-lost promise under the failures a real run meets:

- the stand-in (devhost.standin in its control mode) allows `rate` creates a second and answers
  429 above it and beyond `MAX_CONCURRENT` requests at once, fails 2 % of creates with 503
  (nothing made), and makes 0.5 % and then never answers (the client times out: an unknown
  outcome, resolved by the lookup);
- the host is `python -m devhost.server` with its queue listener (host.json's limits), the app's
  BROADCAST_SENDS_PER_SECOND at the stand-in's rate, and a processing visibility of
  `PROCESSING_VISIBILITY` seconds (the extension's is 10 minutes: the messages a killed host
  held come back that much later, here sooner so the run stays short);
- once `KILL_AT` of the recipients were created, the (first) host gets SIGKILL (no clean stop:
  what a crashed instance does) and a new one starts at once.

It reports, and BENCHMARKS.md records: every recipient in exactly one final state, the stand-in's
creations per recipient (exactly 1 for each sent one, 0 for the refused), nothing left queued, the
sustained create rate as a fraction of the stand-in's limit (seconds the host was down and the
tail of retries excluded) and the time to accept each broadcast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import APP_ROOT, FUNCTION_KEY, app_environ, installed_azurite
from bench.proc import LineChild
from bench.stats import Report, fmt_seconds
from devhost.storage_ops import WRITE_INTERVAL

# The stand-in's creates a second, and the app's pace for the whole account (every host together).
RATE = 50.0
MAX_CONCURRENT = 25
FAIL_RATE = 0.02
TIMEOUT_RATE = 0.005
HANG = 5.0  # seconds a timed-out create holds its connection; the app gives up after 2
STANDIN_DELAY = 0.05  # Twilio's own time to answer a create
PROCESSING_VISIBILITY = 20.0
KILL_AT = float(os.environ.get("BENCH_KILL_AT", "0.4"))  # 2 or more: no kill
RATE_TARGET = 0.9
ACCEPT_TARGET = 10.0  # seconds: shared.broadcasts.starting.ACCEPT_DEADLINE
RUN_TIMEOUT = 1800.0
STEADY_UNTIL = 0.95  # the sustained rate is measured up to this share of the creates
POLL_INTERVAL = 30.0  # seconds between status polls (each counts both broadcasts' rows)
PROGRESS_INTERVAL = 2.0  # seconds between asking the stand-in how many it created
OPS_TARGET = 3.0  # the app's storage operations per recipient, on average
RATE_LIMITED_TARGET = 0.01  # 429s per create, with more than one host
CALLBACK_DRAIN = 180.0  # seconds the callbacks still on their way may take after the last send
CALLBACK_TIMEOUT = 15.0  # seconds: Twilio's webhook timeout


class ScenarioError(RuntimeError):
    """The scenario could not run (a child failed); the message says which and why."""


class Host:
    """`python -m devhost.server` on a fixed port, its output in a log file; killable."""

    def __init__(self, port: int, env: dict[str, str], api_url: str, log: Path) -> None:
        self.port, self.env, self.api_url, self.log = port, env, api_url, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0  # each start counts its storage operations in a file of its own

    def ops_file(self, start: int) -> Path:
        return self.log.with_name(f"{self.log.stem}-ops-{start}.json")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        from devhost.pytest_plugin import port_answers

        self.starts += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own module and interpreter
                [sys.executable, "-m", "devhost.server", "--no-settings", "--port",
                 str(self.port), "--twilio-api", self.api_url, "--host-key", FUNCTION_KEY,
                 "--processing-visibility", f"{PROCESSING_VISIBILITY:g}",
                 "--count-storage", str(self.ops_file(self.starts))],
                cwd=APP_ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not port_answers("127.0.0.1", self.port, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ScenarioError(f"the host did not start; its log: {self.log}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.kill()

    def call(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - our own loopback host
            self.url + path, data=data, method=method,
            headers={"x-functions-key": FUNCTION_KEY, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            detail = error.read()[:300]
            raise ScenarioError(f"{method} {path}: HTTP {error.code} {detail!r}") from None


def numbers(prefix: str, count: int) -> list[str]:
    """`count` distinct, valid US numbers (area code `prefix`, exchanges 200 and up)."""
    return [f"+1{prefix}{2_000_000 + i:07d}" for i in range(count)]


@dataclass
class Broadcast:
    kind: str
    to: list[str]
    id: str = ""
    accepted: int = 0
    refused: tuple[str, ...] = ()
    accept_seconds: float = 0.0

    def start(self, host: Host) -> None:
        field = "body" if self.kind == "sms" else "message"
        began = time.monotonic()
        answer = host.call("POST", "/api/broadcasts",
                           {"kind": self.kind, "to": self.to, field: "The store opens late"})
        self.accept_seconds = time.monotonic() - began
        self.id, self.accepted = answer["id"], answer["accepted"]
        self.refused = tuple(r["to"] for r in answer["refused"])

    def counts(self, host: Host) -> dict[str, int] | None:
        """The counts, or None when the host could not answer now (busy storage, a restart)."""
        try:
            return host.call("GET", f"/api/broadcasts/{self.id}?limit=1")["counts"]
        except (ScenarioError, OSError):
            return None

    def recipients(self, host: Host) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            page = _patiently(host, f"/api/broadcasts/{self.id}?limit=200{token}")
            found += page["recipients"]
            if not page["next"]:
                return found
            token = f"&continuation={page['next']}"


def _patiently(host: Host, path: str, tries: int = 5) -> Any:
    """GET `path`, again after a pause when storage is busy (503): the read-back must not fail
    the run because Azurite is slow with tens of thousands of rows."""
    for attempt in range(tries):
        try:
            return host.call("GET", path)
        except ScenarioError:
            if attempt == tries - 1:
                raise
            time.sleep(5)
    raise AssertionError("unreachable")


def _free_port() -> int:
    from devhost.pytest_plugin import free_ports

    return free_ports(1)[0]


def run(report: Report, sms: int = 10_000, calls: int = 1_000, rate: float = RATE,
        hosts: int = 1, callbacks: bool = False) -> None:
    """The scenario; prints as it goes and adds its checks to `report`. `hosts` local hosts
    drain the one queue (the first is killed once and restarted); with `callbacks` the stand-in
    sends each created text's status callbacks back to them."""
    from devhost.pytest_plugin import Azurite

    print(f"\n== Broadcasts at scale: {sms:,} texts and {calls:,} calls, stand-in at {rate:g} "
          f"creates/s (429 above, and beyond {MAX_CONCURRENT} at once), {FAIL_RATE:.1%} 503, "
          f"{TIMEOUT_RATE:.1%} made then timed out, {hosts} host(s) on one queue, the first "
          f"killed once at {KILL_AT:.0%}"
          + (", status callbacks (queued, sent, delivered) for every text" if callbacks else "")
          + " ==", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-broadcast-"))
    azurite = Azurite(installed_azurite(), workdir / "azurite").start()
    ports = [_free_port() for _ in range(hosts)]
    standin = LineChild("bench.standin", [
        "--delay", f"{STANDIN_DELAY:g}", "--rate", f"{rate:g}",
        "--max-concurrent", str(MAX_CONCURRENT), "--fail-rate", f"{FAIL_RATE:g}",
        "--timeout-rate", f"{TIMEOUT_RATE:g}", "--hang", f"{HANG:g}", "--seed", "2026",
        *[arg for port in ports if callbacks
          for arg in ("--callbacks", f"http://127.0.0.1:{port}")],
    ], app_environ())
    env = app_environ(
        AzureWebJobsStorage=azurite.connection_string,
        BROADCAST_SENDS_PER_SECOND=f"{rate:g}",
        TWILIO_HTTP_TIMEOUT="2",
    )
    fleet = [Host(port, env, f"http://127.0.0.1:{standin.port}", workdir / f"host{i + 1}.log")
             for i, port in enumerate(ports)]
    try:
        for host in fleet:
            host.start()
        _scenario(report, fleet, standin, sms, calls, rate, callbacks, azurite.connection_string)
    finally:
        for host in fleet:
            host.stop()
        standin.close()
        azurite.stop()
    print(f"  (host logs: {', '.join(str(h.log) for h in fleet)})")


def _scenario(
    report: Report, fleet: list[Host], standin: LineChild, sms: int, calls: int, rate: float,
    callbacks: bool, connection_string: str,
) -> None:
    # Refused numbers (premium rate) and duplicates ride along, as in a real customer list: the
    # text's list has `sms` entries in all, 10 of them refused and 10 repeated.
    premium = [f"+1900555{i:04d}" for i in range(10)]
    texts = numbers("415", max(1, sms - 20))
    broadcasts = [
        Broadcast("sms", texts + premium + texts[:10]),
        Broadcast("call", numbers("510", max(1, calls - 2)) + premium[:2]),
    ]
    victim, watcher = fleet[0], fleet[-1]  # with one host, the same: polled once it is back
    for b in broadcasts:
        b.start(watcher)
        print(f"  {b.kind:<4} broadcast {b.id}: {b.accepted:,} accepted, {len(b.refused)} refused,"
              f" answered in {fmt_seconds(b.accept_seconds)}", flush=True)
    started = time.monotonic()

    killed_at = restarted_at = None
    deadline = started + RUN_TIMEOUT
    last_print = 0.0
    unanswered = 0
    accepted = sum(b.accepted for b in broadcasts)
    while True:
        time.sleep(PROGRESS_INTERVAL)
        now = time.monotonic()
        if now > deadline:
            raise ScenarioError(f"recipients still queued after {RUN_TIMEOUT:g} s")
        created = standin.ask("created", timeout=60)["created"]
        if killed_at is None and created >= KILL_AT * accepted:
            victim.kill()
            killed_at = time.monotonic()
            victim.start()
            restarted_at = time.monotonic()
            print(f"  t={killed_at - started:5.0f} s  host {victim.port} killed (SIGKILL) with "
                  f"{created:,} created; restarted in {fmt_seconds(restarted_at - killed_at)}",
                  flush=True)
        # The counts read every row of a broadcast (Azurite scans them, slower as they grow):
        # asked for only every POLL_INTERVAL, or once every recipient may have been created.
        if now - last_print < POLL_INTERVAL and created < accepted:
            continue
        polled = [b.counts(watcher) for b in broadcasts]
        if None in polled:
            unanswered += 1
            continue
        counts = [c for c in polled if c is not None]
        last_print = now
        shown = "; ".join(f"{b.kind} {c}" for b, c in zip(broadcasts, counts, strict=True))
        print(f"  t={now - started:5.0f} s  {shown}", flush=True)
        if sum(c["queued"] for c in counts) == 0:
            break
    if unanswered:
        print(f"  ({unanswered} status polls went unanswered: storage busy or host restarting)")
    finished = time.monotonic()
    ledger = standin.ask("ledger", timeout=60)
    if callbacks:
        until = time.monotonic() + CALLBACK_DRAIN
        while ledger["callbacks_pending"] and time.monotonic() < until:
            time.sleep(5)
            ledger = standin.ask("ledger", timeout=60)
    # Counted now, before the read-back below (a page of records per 200 recipients) adds its
    # own reads; the status polls on the way are in (a few per poll).
    time.sleep(2 * WRITE_INTERVAL)
    operations = _operations(fleet)
    _report(report, watcher, broadcasts, ledger, rate, started, finished, killed_at)
    _report_operations(report, operations, broadcasts, callbacks)
    if len(fleet) > 1:
        creates = len(ledger["created_at"])
        over_rate = ledger["refused"].get("429", 0)
        at_once = ledger["refused"].get("429 concurrent", 0)
        limited = over_rate + at_once
        print(f"  429s: {limited} of {creates + limited:,} create requests ({over_rate} over the "
              f"rate, {at_once} beyond {MAX_CONCURRENT} requests at once)")
        report.check(f"broadcast, {len(fleet)} hosts: 429s / creates", limited / max(creates, 1),
                     RATE_LIMITED_TARGET)
    if callbacks:
        _report_callbacks(report, ledger, connection_string)


def _operations(fleet: list[Host]) -> Counter[str]:
    """The storage operations every start of every host counted so far (devhost.storage_ops)."""
    totals: Counter[str] = Counter()
    for host in fleet:
        for start in range(1, host.starts + 1):
            path = host.ops_file(start)
            if path.exists():
                totals.update(json.loads(path.read_text()))
    return totals


def _report_operations(report: Report, totals: Counter[str], broadcasts: list[Broadcast],
                       callbacks: bool) -> None:
    """The storage operations per accepted recipient: the app's (its sends, records, keys,
    pace, the status polls, and with `callbacks` the callbacks too) and the queue listener's
    (what the Functions host does on Azure)."""
    recipients = sum(b.accepted for b in broadcasts)
    app = {k.split(" ", 1)[1]: v for k, v in totals.items() if k.startswith("app ")}
    listener = sum(v for k, v in totals.items() if k.startswith("host "))
    per = sum(app.values()) / max(recipients, 1)
    shown = ", ".join(f"{kind} {n / max(recipients, 1):.2f}" for kind, n in sorted(app.items()))
    print(f"  storage operations per recipient: the app's {per:.2f} ({shown}); the queue "
          f"listener's {listener / max(recipients, 1):.2f}")
    if not callbacks:  # with them, the callbacks' own operations are in the figure too
        report.check("broadcast: app storage operations per recipient", per, OPS_TARGET, unit="")


def _report_callbacks(report: Report, ledger: dict[str, Any], connection_string: str) -> None:
    """Every status callback the stand-in sent, against the events stored in the records."""
    from azure.data.tables import TableClient

    sent = {sid for sids in ledger["sids"].values() for sid in sids if sid.startswith("SM")}
    expected = 3 * len(sent)
    outcomes = ledger["callbacks"]
    latencies = sorted(ledger["callback_latencies"])
    stored: Counter[str] = Counter()
    with TableClient.from_connection_string(connection_string, "TwilioRecords") as records:
        for row in records.query_entities("RowKey ge 'event-' and RowKey lt 'event.'",
                                          select=["PartitionKey", "MessageStatus"]):
            if row["PartitionKey"] in sent:
                stored[str(row.get("MessageStatus"))] += 1
    whole = sum(stored.values())
    p50 = latencies[len(latencies) // 2] if latencies else 0.0
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    print(f"  status callbacks: {sum(outcomes.values()):,} sent for {len(sent):,} texts "
          f"(answers {outcomes}, {ledger['callback_retries']} retried, "
          f"{ledger['callbacks_pending']} still pending); stored {whole:,} of {expected:,} "
          f"({dict(stored)}); latency p50 {fmt_seconds(p50)}, p99 {fmt_seconds(p99)}")
    report.check("broadcast: status callbacks stored / sent", whole / max(expected, 1), 1.0,
                 at_least=True)
    # Held to Twilio's own webhook timeout: a slower answer is a callback Twilio gives up on.
    report.check("broadcast: status callback latency p99", p99, CALLBACK_TIMEOUT, unit="s")


def _report(
    report: Report,
    host: Host,
    broadcasts: list[Broadcast],
    ledger: dict[str, Any],
    rate: float,
    started: float,
    finished: float,
    killed_at: float | None,
) -> None:
    sids: dict[str, list[str]] = ledger["sids"]
    whole = exactly_once = True
    duplicates = stray = 0
    states: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for b in broadcasts:
        rows = b.recipients(host)
        by_number = Counter(r["to"] for r in rows)
        expected = set(b.to)
        whole &= set(by_number) == expected and max(by_number.values()) == 1
        for row in rows:
            states[f"{b.kind} {row['state']}"] += 1
            made = sids.get(row["to"], [])
            duplicates += max(0, len(made) - 1)
            if row["state"] == "sent":
                exactly_once &= made == [row["sid"]]
            elif row["state"] == "refused":
                stray += len(made)
            else:
                errors[str(row.get("error"))[:70]] += 1
            whole &= row["state"] in ("sent", "failed", "refused")
    print(f"  final states: {dict(sorted(states.items()))}")
    for error, count in errors.most_common(5):
        print(f"    failed x{count}: {error}")
    print(f"  stand-in refusals: {ledger['refused']} ({sum(map(len, sids.values())):,} created)")

    offset = ledger["started"]  # the stand-in's clock: CLOCK_MONOTONIC, as ours
    created = sorted(t + offset for t in ledger["created_at"])
    sustained = _sustained_rate(created, killed_at)
    overall = len(created) / max(created[-1] - created[0], 1e-9) if len(created) > 1 else 0.0
    print(f"  run: {fmt_seconds(finished - started)} to settle every recipient; creates at "
          f"{overall:.1f}/s overall (outage and retry tail included), {sustained:.1f}/s sustained")
    report.check("broadcast: every recipient in exactly one final state", whole, True)
    report.check("broadcast: each sent recipient created exactly once at Twilio", exactly_once,
                 True)
    report.check("broadcast: duplicate creations", float(duplicates), 0.0, unit="")
    report.check("broadcast: creations for refused numbers", float(stray), 0.0, unit="")
    report.check("broadcast: sustained create rate / stand-in's limit", sustained / rate,
                 RATE_TARGET, at_least=True)
    for b in broadcasts:
        report.check(f"broadcast: accept {len(b.to):,} {b.kind} recipients", b.accept_seconds,
                     ACCEPT_TARGET, unit="s")


def _sustained_rate(created: list[float], killed_at: float | None) -> float:
    """Creates a second while the host ran with a backlog: from the first create to the one at
    STEADY_UNTIL of them, less the gap from the kill to the first create after it."""
    if len(created) < 2:
        return 0.0
    end = created[max(0, int(len(created) * STEADY_UNTIL) - 1)]
    span = end - created[0]
    if killed_at is not None:
        after = [t for t in created if t > killed_at]
        if after and after[0] <= end:
            span -= after[0] - killed_at
    counted = sum(1 for t in created if t <= end)
    return counted / span if span > 0 else 0.0


def main() -> int:  # python -m bench.broadcast: the scenario alone
    report = Report()
    run(report, int(os.environ.get("BENCH_SMS", "10000")),
        int(os.environ.get("BENCH_CALLS", "1000")), float(os.environ.get("BENCH_RATE", RATE)),
        int(os.environ.get("BENCH_HOSTS", "1")), os.environ.get("BENCH_CALLBACKS") == "1")
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
