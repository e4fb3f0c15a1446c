"""`python -m bench.first_request`: what a webhook's first request on a new instance costs, module
by module.

A cold start's first request is mostly imports made on first use: for voice_url the TwiML
library, and with CALL_FLOW set the flow's own modules and zoneinfo; for sms_url (`--webhook
sms_url`, with an in-memory Azurite) the storage SDK and aiohttp as well. `python -X
importtime` names them, but its figures are several times what a cold start pays (it times
every import, the host's included, and writes a line for each), so it cannot say which module
is worth a change. This measures each as a cold start pays it:

1. One child, under `-X importtime`, loads the app through the worker host, marks where loading
   ends, and serves the first request: the modules that request imported, in the order their
   imports finished (every module after the modules it imports).
2. Fresh children (bytecode cached, as `bench.cold` runs them) each load the app the same way,
   import those modules one by one in that order, timing each (so each time is the module's
   own: what it imports is there already), then serve the first request, which is left with
   its own work (reading settings, the signature, the flow, the TwiML, storage).
3. As many plain cold starts give the first request as it is, and the floor's.

    python -m bench.first_request --call-flow flows/calls.example.json --runs 15
    python -m bench.first_request --webhook sms_url --runs 7

The times are medians of the children; they add up to about the first request as it is
(importing a module alone is a little dearer than inside another's import). docs/benchmark.md
says how the rules for a cold start were found with it.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import cold, common
from bench.cold_child import MARK
from bench.stats import fmt_seconds, median

# `-X importtime`'s line for a module, written when its import finishes:
# "import time:       412 |       1203 |     shared.callflows.walk"
_IMPORTED = re.compile(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$")
# Under this, a module was already there when its turn came: its package imported it.
WITH_PACKAGE = 10e-6


def imported_after_mark(stderr: str) -> list[str]:
    """The modules `-X importtime` reports after the child's MARK, in the order they finished,
    except that a package comes before its modules: importing `a.b` by name imports `a` first,
    whose `__init__` may import `a.b` itself (zoneinfo's does), so the package's time is its
    own and its modules', and theirs is then nothing."""
    lines = stderr.splitlines()
    if MARK not in lines:
        raise RuntimeError("the child never finished loading the app:\n" + stderr[-3000:])
    finished = [m[1] for m in map(_IMPORTED.match, lines[lines.index(MARK) + 1:]) if m]
    order: list[str] = []
    for name in finished:
        parts = name.split(".")
        for package in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            if package in finished and package not in order:
                order.append(package)
    return order


WEBHOOKS = {"voice_url": "voice", "sms_url": "sms"}


def measure(runs: int, prefix: Path, webhook: str = "voice_url") -> None:
    """Print the webhook's first request, its imports each as a cold start pays it, the rest."""
    hook = common.signed_webhook(WEBHOOKS[webhook])
    floor_request = hook.to("/api/floor")  # the floor gets the same bytes
    case = cold.BytecodeCase("bytecode cached", prefix, write=True)
    cold.one_run(common.APP_ROOT, hook, case)  # discarded: writes every cache
    cold.one_run(common.FLOOR_ROOT, floor_request, case)
    _, stderr, _, _ = cold.child(common.APP_ROOT, hook, case, flags=["-X", "importtime"],
                                 mark=True)
    modules = imported_after_mark(stderr)

    as_is, floor, rest = [], [], []
    costs: dict[str, list[float]] = {name: [] for name in modules}
    collected: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(runs):  # interleaved, so a slow patch of the machine lands on all three
        as_is.append(cold.one_run(common.APP_ROOT, hook, case).first_request)
        floor.append(cold.one_run(common.FLOOR_ROOT, floor_request, case).first_request)
        reading, _, _, _ = cold.child(common.APP_ROOT, hook, case, imports=modules)
        rest.append(reading["served"] - reading["loaded"])
        for name, (seconds, in_gc) in reading["imports"].items():
            costs[name].append(seconds)
            collected[name].append(in_gc)

    each = sorted(((median(v), k) for k, v in costs.items()), reverse=True)
    alone = [(seconds, name) for seconds, name in each if seconds >= WITH_PACKAGE]
    print(f"  first request, as it is:            {fmt_seconds(median(as_is)):>9}  "
          f"(the floor's: {fmt_seconds(median(floor))})")
    print(f"  first request, its imports done:    {fmt_seconds(median(rest)):>9}  "
          "(its own work)")
    in_gc = sum(median(v) for v in collected.values())
    print(f"  its {len(modules)} imports, each alone: {fmt_seconds(sum(c for c, _ in each))} in "
          f"all, {fmt_seconds(in_gc)} of it garbage collection:")
    for seconds, name in alone:
        gc_part = median(collected[name])
        print(f"    {fmt_seconds(seconds):>9}  {name}"
              + (f"  ({fmt_seconds(gc_part)} of it a garbage collection)" if gc_part else ""))
    if len(alone) < len(each):
        print(f"    and {len(each) - len(alone)} imported with their package: "
              + ", ".join(sorted(name for seconds, name in each if seconds < WITH_PACKAGE)))


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m bench.first_request",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15,
                        help="children of each kind (default 15: about 15 seconds)")
    parser.add_argument("--webhook", choices=sorted(WEBHOOKS), default="voice_url",
                        help="the webhook whose first request is measured (default voice_url; "
                        "sms_url keeps each text in an in-memory Azurite, started for the run)")
    parser.add_argument("--call-flow", metavar="FILE",
                        help="CALL_FLOW for the run (like flows/calls.example.json), checked "
                        "and stamped first, as the deploy does")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    print(common.header(argv, "python -m bench.first_request"), flush=True)
    with contextlib.ExitStack() as stack:
        if args.call_flow:
            stack.enter_context(
                common.flow_for_the_run("CALL_FLOW", args.call_flow, [], True))
        if args.webhook == "sms_url":
            stack.enter_context(common.storage_for_the_run())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-first-")))
        print(f"\n== {args.webhook}'s first request after a cold start ({args.runs} runs each, "
              "bytecode cached, median) ==", flush=True)
        measure(args.runs, tmp / "pyc", args.webhook)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
