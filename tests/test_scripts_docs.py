"""The local-development and deployment docs against what the code does: the local host's
options, the settings infra/main.parameters.json maps, the Azurite version pinned, the
benchmark's phases and the package-size claim (issue 19: each was found out of date)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from devhost import server

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
LOCAL_MD = (REPO / "docs" / "local.md").read_text()
DEPLOY_MD = (REPO / "docs" / "deploy.md").read_text()
BENCHMARK_MD = (REPO / "docs" / "benchmark.md").read_text()
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


def optional_parameters() -> list[str]:
    """azd environment values main.parameters.json maps, less azd's own and the required."""
    parameters = json.loads((REPO / "infra" / "main.parameters.json").read_text())["parameters"]
    names = [re.fullmatch(r"\$\{(\w+)\}", p["value"])[1] for p in parameters.values()]
    required = {"TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_PHONE_NUMBER"}
    return [n for n in names if not n.startswith("AZURE_") and n not in required]


@pytest.mark.parametrize("name", optional_parameters())
def test_docs_deploy_names_every_optional_setting_the_parameters_map(name):
    with_azd = DEPLOY_MD.split("## With `azd up`", 1)[1].split("\n## ", 1)[0]
    assert re.search(rf"\b{name}\b", with_azd), f"docs/deploy.md's azd up section lacks {name}"


def test_devhost_readme_names_the_azurite_version_package_lock_pins():
    lock = json.loads((REPO / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/azurite"]["version"]
    named = set(re.findall(r"Azurite (\d+\.\d+(?:\.\d+)?)", DEVHOST_README))
    assert named == {version}, f"devhost/README.md names Azurite {named}; the lock pins {version}"


def test_docs_benchmark_lists_every_phase():
    from bench.__main__ import PHASES

    row = next(line for line in BENCHMARK_MD.splitlines() if line.startswith("| `--only PHASE`"))
    assert [p for p in PHASES if f"`{p}`" not in row] == []


def test_readme_states_the_package_size_target_as_a_target():
    """The benchmark's package size is a target (bench/package.py), missed by the recorded runs:
    the README once said the package was at most 80 MB."""
    from bench.package import TARGET_MB

    assert f"(at most {TARGET_MB:g} MB)" not in README
    assert f"target at most {TARGET_MB:g} MB" in README
