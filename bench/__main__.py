"""`python -m bench`: the whole benchmark, one command, every figure against a floor.

Phases run in this order so that none disturbs another: the deployment package's size (a pip
install into a temporary folder, before anything is timed), then the cold starts (this process is
idle while its children start), then warm latency and the Flask peer in this process, then the
make_call bursts (two child processes and this one as the load generator), then the broadcast
scenario (Azurite, a served host it kills once, a faulty Twilio stand-in; about twelve minutes at
its defaults). It prints the machine,
the command and the date first, every ratio with its target as it is measured, and a summary of
the targets last. The exit code is 0 whether targets are met or not (it is a measurement; pass
--strict to fail on a miss) and non-zero when something could not be measured.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence

from bench import broadcast, cold, common, concurrency, package, peer_flask, warm
from bench.stats import Report

PHASES = ("package", "cold", "warm", "concurrency", "broadcast")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--cold-runs", type=int, default=21,
                        help="cold starts of each side in each bytecode case (default 21)")
    parser.add_argument("--warm-requests", type=int, default=3000,
                        help="measured requests of each of voice_url, sms_url, floor and the "
                        "peer (default 3000)")
    parser.add_argument("--concurrent", type=int, default=100,
                        help="make_calls per burst (default 100)")
    parser.add_argument("--bursts", type=int, default=7,
                        help="bursts; the target is held to their median (default 7)")
    parser.add_argument("--broadcast-sms", type=int, default=10_000, metavar="N",
                        help="recipients of the broadcast phase's text (default 10000)")
    parser.add_argument("--broadcast-calls", type=int, default=1_000, metavar="N",
                        help="recipients of the broadcast phase's call (default 1000)")
    parser.add_argument("--broadcast-rate", type=float, default=broadcast.RATE, metavar="N",
                        help="the stand-in's creates a second in the broadcast phase, and the "
                        f"app's pace (default {broadcast.RATE:g})")
    parser.add_argument("--broadcast-hosts", type=int, default=1, metavar="N",
                        help="local hosts draining the broadcast queue together, on one Azurite "
                        "and one stand-in limit (default 1; the first is killed once)")
    parser.add_argument("--broadcast-callbacks", action="store_true",
                        help="the stand-in sends every created text's status callbacks (queued, "
                        "sent, delivered) back to the hosts, as Twilio would")
    parser.add_argument("--call-flow", metavar="FILE",
                        help="run the app with CALL_FLOW set to this call-flow file (relative to "
                        "the app root, like flows/calls.example.json): voice_url then answers "
                        "the flow's first step instead of the greeting; the flow is checked "
                        "and stamped first, as the deploy does (shared/common/stamp.py)")
    parser.add_argument("--message-flow", metavar="FILE",
                        help="run the app with MESSAGE_FLOW set to this message-flow file "
                        "(like flows/messages.example.json), checked and stamped first")
    parser.add_argument("--unstamped", action="store_true",
                        help="with --call-flow or --message-flow: no check stamp, so the app "
                        "checks the flow in full on its first request (a deploy that skipped "
                        "the package hook)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--only", choices=PHASES, action="append",
                        help="run only this phase (repeatable; default: all)")
    args = parser.parse_args(argv)
    counts = (args.cold_runs, args.warm_requests, args.concurrent, args.bursts,
              args.broadcast_sms, args.broadcast_calls)
    if min(counts) < 1 or not 1 <= args.broadcast_rate <= 1000:
        parser.error("counts must be at least 1, and --broadcast-rate from 1 to 1000")
    if not 1 <= args.broadcast_hosts <= 4:
        parser.error("--broadcast-hosts takes 1 to 4 hosts")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.unstamped and not (args.call_flow or args.message_flow):
        raise SystemExit("--unstamped goes with --call-flow or --message-flow")
    began = time.perf_counter()
    print(common.header(argv), flush=True)
    phases = set(args.only or PHASES)
    with contextlib.ExitStack() as stack:
        for setting, flow, kind in (("CALL_FLOW", args.call_flow, []),
                                    ("MESSAGE_FLOW", args.message_flow, ["--messages"])):
            if flow:
                stack.enter_context(common.flow_for_the_run(setting, flow, kind,
                                                           not args.unstamped))
        if phases & {"cold", "warm"}:
            stack.enter_context(common.storage_for_the_run())
        return run_phases(args, began)


def run_phases(args: argparse.Namespace, began: float) -> int:
    report = Report()
    phases = set(args.only or PHASES)
    if "package" in phases:
        package.run(report)
    if "cold" in phases:
        cold.run(report, args.cold_runs)
    if "warm" in phases:
        latencies = warm.run(report, args.warm_requests)
        peer_flask.report(latencies)
    if "concurrency" in phases:
        concurrency.run(report, args.concurrent, args.bursts)
    if "broadcast" in phases:
        broadcast.run(report, args.broadcast_sms, args.broadcast_calls, args.broadcast_rate,
                      args.broadcast_hosts, args.broadcast_callbacks)
    print(f"\n{report.summary()}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n(benchmark took {time.perf_counter() - began:.0f} s; load average {load:.2f} "
          "at the end)")
    missed = [c for c in report.checks if not c.met]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
