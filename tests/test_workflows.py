"""Offline checks of .github/workflows: actionlint (with shellcheck for `run:` scripts), the
SchemaStore workflow schema from ../shared, and the rules this project sets itself: actions
pinned to full commit SHAs, tests on pull requests, deploy from main with OIDC only."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devhost.pytest_plugin import require_shared

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WORKFLOWS_DIR = REPO / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.y*ml"))
PINNED_USES = re.compile(
    r"^\s*(?:-\s+)?uses:\s+(?P<action>[\w.-]+/[\w./-]+)@(?P<ref>[0-9a-f]{40})"
    r"\s+#\s*(?P<version>v\d+(?:\.\d+){0,2})\s*$"
)
ANY_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<target>\S+)")


def load(path: Path) -> dict[Any, Any]:
    """A workflow as YAML 1.1 reads it; `on` stays a string key (PyYAML would make it True)."""
    document = yaml.safe_load(path.read_text())
    if True in document:
        document["on"] = document.pop(True)
    return document


def workflow(name: str) -> dict[Any, Any]:
    return load(WORKFLOWS_DIR / name)


def tool(name: str) -> str:
    """actionlint comes from requirements-dev.txt; shellcheck from Debian (scripts/test.sh)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        message = f"{name} is not installed: run scripts/test.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    command = [tool("actionlint"), "-shellcheck", tool("shellcheck"), "-format", "{{json .}}"]
    return subprocess.run(
        [*command, *map(str, paths)], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_there_are_test_and_deploy_workflows() -> None:
    assert {p.name for p in WORKFLOWS} >= {"tests.yml", "deploy.yml"}


def test_actionlint_and_shellcheck_find_nothing() -> None:
    result = actionlint(*WORKFLOWS)
    problems = json.loads(result.stdout or "[]")
    assert not problems, "\n".join(
        f"{p['filepath']}:{p['line']}:{p['column']}: {p['message']} [{p['kind']}]" for p in problems
    )
    assert result.returncode == 0, result.stderr


def test_actionlint_really_runs_shellcheck(tmp_path: Path) -> None:
    """Without shellcheck actionlint skips run: scripts silently; make sure it bites."""
    canary = tmp_path / "canary.yml"
    canary.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo $UNQUOTED_VARIABLE\n"
    )
    problems = json.loads(actionlint(canary).stdout or "[]")
    assert any(p["kind"] == "shellcheck" for p in problems), problems


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_schemastore_schema(path: Path) -> None:
    from jsonschema import Draft7Validator

    schema = json.loads(require_shared(SHARED / "schemas" / "github-workflow.json").read_text())
    errors = sorted(Draft7Validator(schema).iter_errors(load(path)), key=lambda e: e.path)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_sha_with_its_version(path: Path) -> None:
    unpinned = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ANY_USES.match(line)
        and not ANY_USES.match(line).group("target").startswith(("./", "docker://"))
        and not PINNED_USES.match(line)
    ]
    assert not unpinned, "pin to a full SHA and name the version in a comment:\n" + "\n".join(
        unpinned
    )


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_explicit_and_minimal(path: Path) -> None:
    permissions = load(path).get("permissions")
    assert isinstance(permissions, dict), "set top-level permissions explicitly"
    assert permissions.get("contents") == "read"
    assert set(permissions) <= {"contents", "id-token"}


def run_steps(document: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


def test_tests_run_on_pull_requests_with_the_readme_command() -> None:
    document = workflow("tests.yml")
    assert "pull_request" in document["on"]
    assert any(
        step.get("run", "").strip() == "bash scripts/test.sh" for step in run_steps(document)
    )
    assert "id-token" not in document["permissions"]


def test_deploy_runs_on_main_with_oidc_and_azd() -> None:
    document = workflow("deploy.yml")
    assert document["on"]["workflow_run"]["branches"] == ["main"]
    assert "pull_request" not in document["on"] and "push" not in document["on"]
    assert document["permissions"]["id-token"] == "write"
    steps = run_steps(document)
    [login] = [s for s in steps if str(s.get("uses", "")).startswith("azure/login@")]
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}, (
        "OIDC only: no creds / client secret"
    )
    commands = " ".join(str(s.get("run", "")) for s in steps)
    assert "azd provision --no-prompt" in commands
    assert "azd deploy --no-prompt" in commands


def test_secrets_reach_steps_only_through_env() -> None:
    """${{ secrets.X }} inside a run: script would be pasted into the shell source."""
    for path in WORKFLOWS:
        for step in run_steps(load(path)):
            assert "secrets." not in str(step.get("run", "")), f"{path.name}: {step.get('name')}"



def test_deploy_checks_the_call_flow_before_provisioning() -> None:
    """A flow with any problem is refused by the app at run time: the workflow refuses to deploy
    it instead (scripts/check_flow.py exits 1), before anything reaches Azure."""
    steps = workflow("deploy.yml")["jobs"]["deploy"]["steps"]
    names = [step.get("name") for step in steps]
    check = steps[names.index("Check the call flow")]
    assert "scripts/check_flow.py" in check["run"] and "$CALL_FLOW" in check["run"]
    # After `--`: a flow named like an option ("--help") is checked as a file, never skipped.
    assert '-- "$CALL_FLOW"' in check["run"]
    messages = steps[names.index("Check the message flow")]
    assert '--messages -- "$MESSAGE_FLOW"' in messages["run"]
    assert names.index("Check the call flow") < names.index("Provision") < names.index("Deploy")


def test_deploy_ships_only_a_commit_whose_tests_passed() -> None:
    """No push trigger of its own and no manual one: deploy.yml runs when the tests workflow
    completes, deploys only a success of a push to main, checks out exactly the commit those
    tests ran on, and says on its summary what it deployed."""
    document = workflow("deploy.yml")
    tests = workflow("tests.yml")
    trigger = document["on"]["workflow_run"]

    assert set(document["on"]) == {"workflow_run"}
    assert trigger["workflows"] == [tests["name"]] and trigger["types"] == ["completed"]
    condition = " ".join(document["jobs"]["deploy"]["if"].split())
    for part in ("github.event.workflow_run.conclusion == 'success'",
                 "github.event.workflow_run.event == 'push'",
                 "github.event.workflow_run.head_branch == 'main'"):
        assert part in condition
    steps = document["jobs"]["deploy"]["steps"]
    [checkout] = [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkout["with"]["ref"] == "${{ github.event.workflow_run.head_sha }}"
    names = [step.get("name") for step in steps]
    assert names.index("Check the message flow") < names.index("Provision")
    summary = steps[names.index("Say what was deployed")]
    assert names.index("Deploy") < names.index("Say what was deployed")
    assert "GITHUB_STEP_SUMMARY" in summary["run"] and "TESTED_SHA" in summary["run"]
