"""`python -m bench.compare OTHER`: this checkout's cold start against another's, and the floor.

A change that saves a millisecond of a 150 ms cold start (under 1 %) is lost in the noise of one
benchmark run (21 rounds: about +-2 % on a shared machine). This alternates cold starts of this
checkout's app, OTHER's (another checkout of this repo, e.g. `git worktree add /tmp/before
HEAD~1`) and the floor, many rounds in a shuffled order, each in its own checkout (its own
`shared`, devhost and check stamp), bytecode cached (or, with --package-bytecode, as deployed),
and prints per side the median time to the first 200, the ratio to the floor (median of each
side, and median of the per-round quotients), and the CPU time each child process used (every
thread, start to exit, as the kernel counts it for this process's children), which a slow patch
of the machine disturbs less than the clock. The last line is the median of the per-round CPU
differences: what the change costs or saves. docs/benchmark.md says which forms were kept on
such evidence.

    python -m bench.compare /tmp/before --rounds 100 --call-flow flows/calls.example.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import cold, common
from bench.cold import BytecodeCase, ColdRun
from bench.stats import fmt_seconds, median


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path,
                        help="another checkout of this repo (its app is the other side)")
    parser.add_argument("--rounds", type=int, default=100,
                        help="rounds of one cold start of each side (default 100: about a "
                        "minute)")
    parser.add_argument("--package-bytecode", action="store_true",
                        help="each app (and the floor) with the hash-checked bytecode the "
                        "package step compiles, read-only, as deployed (default: bytecode "
                        "cached)")
    parser.add_argument("--floor-like-app", action="store_true",
                        help="the floor with as many functions as this checkout's app has, "
                        "each the floor's constant TwiML under the app's folder name: what the "
                        "app costs beyond loading that many functions (a reported figure, not "
                        "the benchmark's floor)")
    parser.add_argument("--call-flow", metavar="FILE",
                        help="CALL_FLOW for both apps (like flows/calls.example.json), checked "
                        "and stamped in each checkout by its own check")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not (args.other / "host.json").is_file() or not (args.other / "voice_url").is_dir():
        parser.error(f"{args.other} is not a checkout of this app (no host.json and voice_url)")
    return args


def _p10(values: list[float]) -> float:
    return sorted(values)[len(values) // 10]


def floor_like(app_root: Path, into: Path) -> Path:
    """A floor app with one function per function folder of `app_root`, each the floor's own
    (its __init__.py, its function.json with the folder's name as the route)."""
    into.mkdir()
    shutil.copy(common.FLOOR_ROOT / "host.json", into / "host.json")
    floor = common.FLOOR_ROOT / "floor"
    binding = json.loads((floor / "function.json").read_text(encoding="utf-8"))
    for folder in cold.app_sources(app_root)[1:]:  # [0] is shared/
        (into / folder.name).mkdir()
        shutil.copy(floor / "__init__.py", into / folder.name / "__init__.py")
        for entry in binding["bindings"]:
            if entry.get("type") == "httpTrigger":
                entry["route"] = folder.name
        (into / folder.name / "function.json").write_text(json.dumps(binding), encoding="utf-8")
    return into


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    print(common.header(argv, "python -m bench.compare"), flush=True)
    sides = {"this": common.APP_ROOT, "other": args.other.resolve()}
    voice = common.signed_webhook("voice")
    with contextlib.ExitStack() as stack:
        if args.call_flow:
            for root in sides.values():
                stack.enter_context(
                    common.flow_for_the_run("CALL_FLOW", args.call_flow, [], True, root))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-compare-")))
        floor_root, floor_request = common.FLOOR_ROOT, voice.to("/api/floor")
        if args.floor_like_app:
            # voice_url's request, answered by the floor's function in a folder of that name
            floor_root, floor_request = floor_like(common.APP_ROOT, tmp / "floor_app"), voice
            print(f"floor: {len(cold.app_sources(floor_root)) - 1} functions, like this app's",
                  flush=True)

        cases = {side: BytecodeCase(side, tmp / side, write=True) for side in (*sides, "floor")}

        def run(side: str) -> ColdRun:
            if side == "floor":
                return cold.one_run(floor_root, floor_request, cases[side])
            return cold.one_run(sides[side], voice, cases[side], checkout=sides[side])

        order = ["this", "other", "floor"]
        runs: dict[str, list[ColdRun]] = {side: [] for side in order}
        for side in order:  # discarded: each writes its bytecode cache, warms the page cache
            run(side)
        if args.package_bytecode:  # as cold.run makes its "package bytecode" case
            for side, case in list(cases.items()):
                root = floor_root if side == "floor" else sides[side]
                sources = cold.app_sources(root)[1:] if side == "floor" else cold.app_sources(root)
                cold.without_app_bytecode(case.prefix, sources)
                cold.package_bytecode(case.prefix, sources)
                cases[side] = BytecodeCase(side, case.prefix, write=False)
        shuffled = random.Random(cold.ORDER_SEED)
        for _ in range(args.rounds):
            shuffled.shuffle(order)  # no side always right after the same other
            for side in order:
                runs[side].append(run(side))

    floor = runs["floor"]
    for side in runs:
        mine = runs[side]
        total = median([r.total for r in mine])
        ratio = total / median([r.total for r in floor])
        paired = median([a.total / f.total for a, f in zip(mine, floor, strict=True)])
        cpu = [r.cpu for r in mine]
        print(f"  {side:<5}  median {fmt_seconds(total):>9}  /floor {ratio:.3f}x "
              f"(paired {paired:.3f}x)  CPU median {fmt_seconds(median(cpu))}, "
              f"p10 {fmt_seconds(_p10(cpu))}")
    saved = median([o.cpu - t.cpu for t, o in zip(runs["this"], runs["other"], strict=True)])
    print(f"  CPU, median of other - this per round: {saved * 1e3:+.2f} ms "
          f"({'this is cheaper' if saved > 0 else 'this costs more' if saved < 0 else 'even'}; "
          f"{args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
