"""The benchmark's Twilio stand-in: devhost's (`devhost/standin.py`), in its control mode.

    python -m bench.standin [--delay 0.1]

It runs in its own process (so its event loop competes with neither the host nor the load
generator for the GIL), listens on a free loopback port, prints `READY <port>`, and then answers
`stats` on stdin with one JSON line: TCP connections accepted and requests served so far. That
count is how the benchmark sees whether make_call reuses its connection: a warm client that
opens a new connection per call shows up here as one more accepted connection per call. Every
answer waits 100 ms (`--delay`), Twilio's own time to create the call. EOF on stdin stops it.

One implementation: `python -m devhost.standin --control --port 0 --delay 0.1` is the same.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from devhost.standin import main as standin_main

BENCH_DEFAULTS = ("--control", "--port", "0", "--delay", "0.1")


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    return standin_main([*BENCH_DEFAULTS, *args], prog="python -m bench.standin")


if __name__ == "__main__":
    sys.exit(main())
