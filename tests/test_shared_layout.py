"""shared/ is grouped by capability (issue 20): every module's imports of the app's own modules,
function-level ones included, form no circle, and each module imports alone in a fresh
interpreter (what the worker does at a cold start, one function folder at a time)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from devhost.pytest_plugin import APP_ROOT

SHARED = APP_ROOT / "shared"
MODULES = sorted(
    ".".join(path.relative_to(APP_ROOT).with_suffix("").parts).removesuffix(".__init__")
    for path in SHARED.rglob("*.py")
)
CAPABILITIES = ("common", "webhooks", "outbound", "records", "broadcasts", "callflows",
                "messageflows", "console", "browsercalls", "telemetry")
# Worn by every function folder's `main` (its invocation span): imported at load on top of the
# folder's one capability, and cheap (no OpenTelemetry until telemetry is on: test_telemetry).
CROSS_CUTTING = "telemetry"


def _path(module: str) -> Path:
    base = APP_ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imports_of(module: str) -> set[str]:
    """The app's modules that `module` imports anywhere in its code (a `from package import
    name` counts as the submodule when there is one, else as the package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(_path(module).read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("shared")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found - {module}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports, if there is any (depth-first, three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_check_finds_a_circle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_in_shared_imports_another_in_a_circle():
    graph = {module: imports_of(module) for module in MODULES}
    assert cycle(graph) is None, " -> ".join(cycle(graph) or [])


def test_shared_is_one_package_per_capability_with_its_settings():
    top = {p.name for p in SHARED.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert top == set(CAPABILITIES)
    loose = {p.name for p in SHARED.glob("*.py")}
    assert loose == {"__init__.py", "app_settings.py"}
    for capability in CAPABILITIES:
        assert (SHARED / capability / "settings.py").is_file(), capability
        assert ast.get_docstring(ast.parse((SHARED / capability / "__init__.py").read_text()))


def test_the_settings_hand_out_nothing_lazily():
    for path in SHARED.rglob("settings.py"):
        names = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert "__getattr__" not in names, path


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_in_a_fresh_interpreter(module):
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], cwd=APP_ROOT, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]


FOLDERS = sorted(p.parent for p in APP_ROOT.glob("*/function.json"))


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_a_function_folder_imports_one_capability_at_load(folder):
    """What the worker imports when it loads a folder: one module of one capability (a webhook
    whose work is another capability's reaches it on its first request only)."""
    body = ast.parse((folder / "__init__.py").read_text()).body
    at_load = {n.module or "" for n in body if isinstance(n, ast.ImportFrom)}
    at_load |= {a.name for n in body if isinstance(n, ast.Import) for a in n.names}
    ours = {m for m in at_load if m.startswith("shared")}
    ours |= {f"shared.{a.name}" for n in body if isinstance(n, ast.ImportFrom)
             and n.module == "shared" for a in n.names}
    ours -= {"shared", f"shared.{CROSS_CUTTING}"}
    assert len(ours) <= 1, ours
    capabilities = {
        (n.module or "").split(".")[1] if "." in (n.module or "") else n.names[0].name
        for n in ast.walk(ast.parse((folder / "__init__.py").read_text()))
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("shared")
    } - {CROSS_CUTTING}
    # Webhooks whose work lives in another capability reach it on their first request.
    reaching = ("call_status", "message_status", "recording_status", "voice_url", "call_flow",
                "sms_url", "client_voice")
    assert len(capabilities) <= (2 if folder.name in reaching else 1)
