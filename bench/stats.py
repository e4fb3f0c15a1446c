"""Percentiles, ratios against the floor, and the lines the benchmark prints.

Every figure is printed next to the floor measured in the same run and the target it is held to,
so a reader never has to compare numbers from different machines or days. Percentiles are
nearest-rank (a value that was actually observed), not interpolated.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least pct % of samples at or below."""
    if not samples:
        raise ValueError("no samples")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {pct}")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def fmt_seconds(seconds: float) -> str:
    """Seconds in the unit that keeps three significant digits readable (s, ms or µs)."""
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


@dataclass(frozen=True)
class Check:
    """One target: what was measured, its value, the limit, and whether it was met."""

    name: str
    value: float | bool
    limit: float | bool
    unit: str = "x"  # "x" for ratios (value <= limit), "" for yes/no checks (value == limit)
    at_least: bool = False  # the value must reach the limit (a rate), not stay under it

    @property
    def met(self) -> bool:
        if isinstance(self.limit, bool):
            return self.value is self.limit
        if self.at_least:
            return float(self.value) >= float(self.limit)
        return float(self.value) <= float(self.limit)

    @property
    def by(self) -> str:
        """How far off a missed ratio is, as a percentage over the limit."""
        if self.met or isinstance(self.limit, bool):
            return ""
        if self.at_least:
            return f" (under by {(1 - float(self.value) / float(self.limit)) * 100:.1f} %)"
        return f" (over by {(float(self.value) / float(self.limit) - 1) * 100:.1f} %)"

    def line(self) -> str:
        verdict = "MET" if self.met else "MISSED"
        if isinstance(self.limit, bool):
            shown, target = ("yes" if self.value else "no"), ("yes" if self.limit else "no")
            return f"  {self.name:<58} {shown:>7}   target {target:<8} {verdict}"
        if self.at_least:
            return (f"  {self.name:<58} {float(self.value):>6.2f}{self.unit}   target >= "
                    f"{float(self.limit):.2f}{self.unit}  {verdict}{self.by}")
        if self.unit != "x":
            return (f"  {self.name:<58} {float(self.value):>6.1f} {self.unit}  target <= "
                    f"{float(self.limit):g} {self.unit}  {verdict}{self.by}")
        return (f"  {self.name:<58} {float(self.value):>6.2f}x   target <= {float(self.limit):.2f}x"
                f"  {verdict}{self.by}")


@dataclass
class Report:
    """Collects the printed sections and the checks; the summary lists every target once."""

    checks: list[Check] = field(default_factory=list)

    def check(
        self,
        name: str,
        value: float | bool,
        limit: float | bool,
        unit: str = "x",
        at_least: bool = False,
    ) -> Check:
        item = Check(name, value, limit, unit, at_least)
        self.checks.append(item)
        print(item.line(), flush=True)
        return item

    def summary(self) -> str:
        met = sum(c.met for c in self.checks)
        lines = [f"Targets: {met} of {len(self.checks)} met"]
        lines += [c.line() for c in self.checks]
        return "\n".join(lines)
