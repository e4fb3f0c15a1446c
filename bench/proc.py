"""Child processes spoken to one JSON line at a time (the served host and the Twilio stand-in).

Both run in their own processes so that what they import, and the time they spend, is theirs:
the served host's sys.modules is the one the import target is about, and the stand-in must not
share a GIL with the host it is timing. A reader thread turns stdout into a queue so every wait
has a timeout: a wedged child fails the benchmark with its stderr instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from bench.common import APP_ROOT

START_TIMEOUT = 30.0
REPLY_TIMEOUT = 10.0


class ChildError(RuntimeError):
    """A child failed to start or answer; the message carries the tail of its stderr."""


class LineChild:
    """`python -m <module> <args>`: waits for `READY <port>`, then answers commands on stdin."""

    def __init__(self, module: str, args: Sequence[str], env: Mapping[str, str]) -> None:
        self.module = module
        self._stderr: TextIO = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(  # noqa: S603 - our own module, run with our interpreter
            [sys.executable, "-m", module, *args],
            cwd=APP_ROOT,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, name=f"{module}-stdout", daemon=True).start()
        first = self._next(START_TIMEOUT)
        if not first.startswith("READY "):
            raise ChildError(self._failure(f"expected READY, got {first!r}"))
        self.port = int(first.split()[1])

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ChildError(self._failure(f"no answer within {timeout:g} s")) from None
        if line is None:
            raise ChildError(self._failure("exited"))
        return line

    def _failure(self, what: str) -> str:
        self._stderr.seek(0)
        tail = "".join(self._stderr.readlines()[-30:])
        return f"{self.module}: {what} (exit code {self.proc.poll()}); stderr:\n{tail}"

    def ask(self, command: str, timeout: float = REPLY_TIMEOUT) -> Any:
        """Send one command line; return its one-line JSON answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self._next(timeout))

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def close(self) -> None:
        """Close stdin (the child's signal to stop), then wait; kill only if it will not stop."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._stderr.close()

    def __enter__(self) -> LineChild:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

