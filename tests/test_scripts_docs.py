"""The local-development docs against what the code does: the local host's options and the
Azurite version pinned (issue 19: each was found out of date)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from devhost import server

REPO = Path(__file__).resolve().parents[1]
LOCAL_MD = (REPO / "docs" / "local.md").read_text()
DEVHOST_README = (REPO / "devhost" / "README.md").read_text()


def server_options() -> list[str]:
    """The long options `python -m devhost.server --help` lists."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        server._parse_args(["--help"])
    return sorted(set(re.findall(r"(--[a-z][a-z-]+)", out.getvalue())) - {"--help"})


@pytest.mark.parametrize("option", server_options())
def test_docs_local_lists_every_option_of_the_local_host(option):
    rows = [line for line in LOCAL_MD.splitlines() if line.startswith("| `")]
    assert any(f"`{option}" in row.split(" | ")[0] for row in rows), (
        f"docs/local.md's options table lacks {option}")


def test_devhost_readme_names_the_azurite_version_package_lock_pins():
    lock = json.loads((REPO / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/azurite"]["version"]
    named = set(re.findall(r"Azurite (\d+\.\d+(?:\.\d+)?)", DEVHOST_README))
    assert named == {version}, f"devhost/README.md names Azurite {named}; the lock pins {version}"
