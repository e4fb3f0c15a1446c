"""Cold start: process spawn to the first 200 from voice_url, against the floor app, interleaved.

Each run is a fresh `python -m bench.cold_child` that loads every function of an app through
the worker host and serves one request. Each round runs app and floor in both bytecode cases
(below), in an order shuffled anew each round, so a slow patch of the machine (another process,
a slower CPU share) lands on every side alike, and no side always follows the same other; the
median of each side is compared, as the issue asks, and the median of the per-round quotients
is printed beside it as a check on the noise.

Bytecode is controlled, not inherited: PYTHONDONTWRITEBYTECODE may or may not be set in the
caller's shell, and a clone may or may not have __pycache__ folders. Three cases are measured,
each with its own PYTHONPYCACHEPREFIX under a temporary folder (the repo gets no __pycache__):

- "bytecode cached": a discarded pair of runs first writes the caches of everything imported,
  as any Python process that can write its caches has them from the second start on;
- "package bytecode": the deployment as `azd` makes it (scripts/prepackage.py): read-only, the
  app's own modules (shared/ and the function folders; the floor's function folder likewise)
  with the hash-checked bytecode the package step compiles, the rest as cached;
- "app compiled at import": the same caches minus the app's own bytecode, with writing turned
  off, so the app's sources are compiled at every start while the host, worker and libraries
  are not: a package made without that step (reported, not held to the target: it is not how
  this app deploys).
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import APP_ROOT, FLOOR_ROOT, SignedRequest, app_environ, signed_webhook
from bench.stats import Report, fmt_seconds, median

CHILD_TIMEOUT = 60.0
TARGET = 1.15
ORDER_SEED = 2026  # the rounds' orders are shuffled, the same way in every run


@dataclass(frozen=True)
class ColdRun:
    """One child's clock readings, relative to the parent's reading just before spawn."""

    total: float  # spawn -> first 200
    interpreter: float  # spawn -> the child's first line of code
    load: float  # worker init + every function loaded
    first_request: float
    functions: list[str]
    modules: list[str]
    cpu: float  # CPU time the child process used, every thread, start to exit


@dataclass
class ColdResult:
    label: str
    app: list[ColdRun] = field(default_factory=list)
    floor: list[ColdRun] = field(default_factory=list)
    sms: list[ColdRun] = field(default_factory=list)  # the app again, its first request sms_url

    @property
    def ratio(self) -> float:
        return _median(self.app, "total") / _median(self.floor, "total")

    @property
    def sms_ratio(self) -> float:
        return _median(self.sms, "total") / _median(self.floor, "total")

    @property
    def paired_ratio(self) -> float:
        """Median of app run i / floor run i: runs of a round start within a second of each
        other, so a drift in machine speed cancels out of each quotient."""
        return median([a.total / f.total for a, f in zip(self.app, self.floor, strict=True)])


def _median(runs: list[ColdRun], attr: str) -> float:
    return median([getattr(r, attr) for r in runs])


# The app's own code, whose bytecode the "compiled at import" case leaves out of the cache:
# shared/ and every function folder (found as the host finds them, so a new function is never
# left with cached bytecode; a hand-kept list had missed the three broadcast functions).
def app_sources(root: Path) -> list[Path]:
    return [root / "shared", *sorted(path.parent for path in root.glob("*/function.json"))]


APP_SOURCES = app_sources(APP_ROOT)
FLOOR_SOURCES = [FLOOR_ROOT / "floor"]


@dataclass(frozen=True)
class BytecodeCase:
    """A name and the environment that sets a child's bytecode behaviour."""

    label: str
    prefix: Path
    write: bool
    held_to_target: bool = True

    def env(self) -> dict[str, str]:
        env = app_environ()
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.prefix)
        if not self.write:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env


def _cached_tree(prefix: Path, source_dir: Path) -> Path:
    """Where PYTHONPYCACHEPREFIX keeps the bytecode of the modules in `source_dir`."""
    return prefix / source_dir.resolve().relative_to(source_dir.resolve().anchor)


def child(app_root: Path, request: SignedRequest, case: BytecodeCase,
          checkout: Path = APP_ROOT, flags: Sequence[str] = (),
          **extra: object) -> tuple[dict[str, Any], str, float, float]:
    """Spawn `python [flags] -m bench.cold_child` in `checkout` (its devhost, and its `shared`
    package for an app inside it) for one request, `extra` added to what it is told (see
    bench/cold_child.py): its reading, its stderr, the parent's clock just before the spawn,
    and the CPU time the child used."""
    env = case.env()
    env["BENCH_COLD_REQUEST"] = json.dumps({
        "app_root": str(app_root),
        "method": request.method,
        "path": request.path,
        "headers": request.headers,
        "body": request.body.decode("ascii"),
        **extra,
    })
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    spawned = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our own child module, run with our interpreter
        [sys.executable, *flags, "-m", "bench.cold_child"],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"cold start of {app_root} failed (exit {done.returncode}):\n"
                           f"{done.stdout}\n{done.stderr[-3000:]}")
    # This process's children are run one at a time: the difference is this child's own.
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ended.ru_utime - used.ru_utime) + (ended.ru_stime - used.ru_stime)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr, spawned, cpu


def one_run(app_root: Path, request: SignedRequest, case: BytecodeCase,
            checkout: Path = APP_ROOT) -> ColdRun:
    """One cold start (`child`) and its readings, relative to the spawn."""
    reading, _, spawned, cpu = child(app_root, request, case, checkout)
    return ColdRun(
        total=reading["served"] - spawned,
        interpreter=reading["started"] - spawned,
        load=reading["loaded"] - reading["started"],
        first_request=reading["served"] - reading["loaded"],
        functions=reading["functions"],
        modules=reading["modules"],
        cpu=cpu,
    )


def run(report: Report, runs: int) -> list[ColdResult]:
    """`runs` interleaved cold starts of each side in each bytecode case; ratio of medians."""
    print(f"\n== 1. Cold start: spawn -> first 200 through the worker host, every function "
          f"loaded ({runs} runs each, interleaved, median) ==", flush=True)
    voice = signed_webhook("voice")
    floor_request = voice.to("/api/floor")
    with tempfile.TemporaryDirectory(prefix="bench-pyc-") as tmp:
        cached = BytecodeCase("bytecode cached", Path(tmp) / "cached", write=True)
        packaged = BytecodeCase("package bytecode", Path(tmp) / "packaged", write=False)
        compiled = BytecodeCase("app compiled at import", Path(tmp) / "compiled", write=False,
                                held_to_target=False)
        cases = (cached, packaged, compiled)
        one_run(APP_ROOT, voice, cached)  # discarded: writes every cache, warms the page cache
        one_run(APP_ROOT, signed_webhook("sms"), cached)  # and sms_url's (the storage SDK's)
        one_run(FLOOR_ROOT, floor_request, cached)
        shutil.copytree(cached.prefix, compiled.prefix)
        without_app_bytecode(compiled.prefix, APP_SOURCES + FLOOR_SOURCES)
        shutil.copytree(compiled.prefix, packaged.prefix)
        package_bytecode(packaged.prefix, APP_SOURCES + FLOOR_SOURCES)

        results = [ColdResult(case.label) for case in cases]
        order = random.Random(ORDER_SEED)
        for _ in range(runs):
            sides = []
            for case, result in zip(cases, results, strict=True):
                sides += [(APP_ROOT, voice, case, result.app),
                          (APP_ROOT, signed_webhook("sms"), case, result.sms),
                          (FLOOR_ROOT, floor_request, case, result.floor)]
            # A new order each round, so no run always follows the same other run (a rotation
            # keeps every run's neighbours: each floor came right after an sms_url child, whose
            # storage work goes on in Azurite, and each app right after a floor).
            order.shuffle(sides)
            for root, request, case, into in sides:
                into.append(one_run(root, request, case))

    for result in results:
        print(f"  {result.label}:")
        for label, runs_ in (("app (voice_url)", result.app), ("app (sms_url)", result.sms),
                             ("floor", result.floor)):
            print(f"    {label:<16} median {fmt_seconds(_median(runs_, 'total')):>9}  "
                  f"[interpreter {fmt_seconds(_median(runs_, 'interpreter'))}, "
                  f"worker init + load {fmt_seconds(_median(runs_, 'load'))}, "
                  f"first request {fmt_seconds(_median(runs_, 'first_request'))}]  "
                  f"min {fmt_seconds(min(r.total for r in runs_))} "
                  f"max {fmt_seconds(max(r.total for r in runs_))}")
    first = results[0].app[0]
    print(f"  functions loaded (app): {', '.join(first.functions)}; twilio.rest, aiohttp or "
          f"phonenumbers imported after the first voice_url: {', '.join(first.modules) or 'none'}")
    print("  the same as the median of paired quotients (app run / floor run of the same round): "
          + ", ".join(f"{r.label} {r.paired_ratio:.2f}x" for r in results))
    for case, result in zip(cases, results, strict=True):
        for name, ratio in (("voice_url", result.ratio), ("sms_url", result.sms_ratio)):
            if case.held_to_target:
                report.check(f"cold start {name} / floor, {result.label}", ratio, TARGET)
            else:
                print(f"  cold start {name} / floor, {result.label}: {ratio:.2f}x (not held to "
                      "the target: the package step compiles the app's bytecode)")
    return results


def without_app_bytecode(prefix: Path, sources: list[Path]) -> None:
    """Remove the bytecode cached under `prefix` for the modules in `sources`."""
    for source_dir in sources:
        shutil.rmtree(_cached_tree(prefix, source_dir), ignore_errors=True)


def package_bytecode(prefix: Path, sources: list[Path]) -> None:
    """What scripts/prepackage.py puts in the package (hash-checked bytecode) for the modules in
    `sources` (the app's and the floor's), written under `prefix`, where the children look for
    bytecode."""
    sys.path.insert(0, str(APP_ROOT / "scripts"))
    try:
        import prepackage
    finally:
        sys.path.remove(str(APP_ROOT / "scripts"))
    before, sys.pycache_prefix = sys.pycache_prefix, str(prefix)
    try:
        if not prepackage.compile_folders(sources):
            raise RuntimeError("the app's modules do not compile")
    finally:
        sys.pycache_prefix = before
