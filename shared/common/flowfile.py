"""A flow file (CALL_FLOW, MESSAGE_FLOW): a JSON file inside the deployed app, read and checked
once per process, refused whole when anything in it is wrong.

`checked` reads the file and builds the flow: without judging its numbers again when its check
stamp vouches for it (shared.common.stamp), else in full; it logs one line either way (INFO, or
ERROR naming every problem), once per process and settings, since the caller keeps the result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from shared.common import logs, redact, stamp
from shared.common.text import is_unicode

logger = logs.get_logger(__name__)

T = TypeVar("T")

# The app root: the deployed package's top, where host.json is (shared/common/ is two below).
APP_ROOT = Path(__file__).resolve().parents[2]


class FlowProblems(ValueError):
    """Every problem found in a flow, each naming where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def read(path: str | Path, setting: str, root: Path | None = None) -> tuple[Path, bytes, object]:
    """The flow file at `path` (relative to `root`, the app root by default; `setting` names
    it in problems): where it is, its bytes and its JSON; raises FlowProblems when it is not a
    JSON file inside `root`."""
    root = root or APP_ROOT
    named = f"{setting}: '{str(path)[:80]}'"
    try:
        file = (root / path).resolve()
    except (OSError, RuntimeError):  # RuntimeError: links that loop
        raise FlowProblems([f"{named} cannot be followed to a file"]) from None
    if root.resolve() not in file.parents:
        raise FlowProblems([f"{named} is not a file inside the app"])
    repeated: list[str] = []
    try:
        content = file.read_bytes()
        # utf-8-sig: an editor's byte order mark is not part of the JSON (the host reads
        # function.json so too).
        data = json.loads(content.decode("utf-8-sig"),
                          object_pairs_hook=lambda pairs: _object(pairs, repeated))
    except FileNotFoundError:
        raise FlowProblems([f"{setting}: no file '{str(path)[:80]}' in the app"]) from None
    except RecursionError:
        raise FlowProblems([f"{named} nests too deeply to be a flow"]) from None
    except json.JSONDecodeError as error:
        raise FlowProblems([f"{named} is not JSON: {error.msg} at line {error.lineno} column "
                            f"{error.colno}"]) from None
    except UnicodeDecodeError as error:
        raise FlowProblems([f"{named} is not UTF-8 text (byte {error.start})"]) from None
    except (OSError, ValueError) as error:
        raise FlowProblems([f"{named} cannot be read ({type(error).__name__})"]) from None
    # JSON's \\ud800 escapes can make a text with no UTF-8 form, which Twilio, storage and the
    # logs cannot take (keys too: the whole flow is written out once to find one).
    if b"\\u" in content and not is_unicode(json.dumps(data, ensure_ascii=False)):
        raise FlowProblems([f"{named} holds a \\u escape of half a character (an unpaired "
                            "surrogate, like \\ud800), which no text or call can carry"])
    if repeated:
        # JSON lets a key appear twice and json.loads keeps the last: a second "mon" or a
        # second step of the same name would silently replace the first.
        raise FlowProblems([f"{setting}: the key '{key[:40]}' appears twice in one object"
                            for key in dict.fromkeys(repeated)])
    return file, content, data


def _object(pairs: list[tuple[str, object]], repeated: list[str]) -> dict[str, object]:
    """A JSON object, noting each key that appears in it more than once."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                repeated.append(key)
            seen.add(key)
    return found


def checked(
    path: str,
    setting: str,
    inputs: Mapping[str, str | None],
    full: Callable[[object], T],
    vouched: Callable[[object], T],
    judges: tuple[str, ...],
    root: Path | None = None,
) -> T | FlowProblems:
    """The flow at `path`: built by `vouched` when its stamp matches `inputs` (the raw policy
    settings) and this code, naming at least `judges` (the modules of the check and of the
    number policy, as paths from the app root), else by `full`; or its problems. Both raise
    FlowProblems."""
    root = root or APP_ROOT
    what = setting.lower().replace("_", " ")
    try:
        file, content, data = read(path, setting, root)
        unstamped = stamp.mismatch(file, content, dict(inputs), root, judges)
        found = vouched(data) if unstamped is None else full(data)
    except FlowProblems as problems:
        # The problems quote the flow's numbers: the check command prints them whole, the log
        # line redacts them as every log line does.
        logger.error("%s outcome=refused file=%s problems=%d: %s", what, path[:80],
                     len(problems.problems), redact.phone_numbers_in("; ".join(problems.problems)))
        return problems
    except Exception as error:  # a bug, or a setting the check trips on: refused, never a 500
        logger.error("%s outcome=refused file=%s reason=%s", what, path[:80], type(error).__name__)
        return FlowProblems([f"{setting}: could not be checked ({type(error).__name__})"])
    logger.info("%s outcome=checked file=%s checked %s", what, path[:80],
                "by its stamp" if unstamped is None else f"in full ({unstamped})")
    return found
