#!/usr/bin/env python3
"""Make the deployment package start fast: run as azd's `prepackage` hook (azure.yaml), before
the app's folder is zipped.

1. The call flow (CALL_FLOW) and the message flow (MESSAGE_FLOW), when set: checked as the app
   checks them and stamped (scripts/check_flow.py --stamp), with the settings azd gives the app.
   A flow with any problem stops the deploy (exit 1): the app would refuse it whole.
2. The app's own bytecode: every module of shared/ and of each function folder compiled into its
   __pycache__, hash-checked (PEP 552). The Function App runs from a read-only package, so without
   it every new instance compiles each module it imports and throws the result away; with it, a
   module whose source matches its .pyc (by hash: packaging does not keep file times) is loaded
   as is, and one that does not is compiled as before, so stale bytecode never runs. The bytecode
   is for this interpreter's version: deploy with the Function App's (3.11), or it is ignored.

    .venv/bin/python scripts/prepackage.py

Dev-only: scripts/ is not in the package (.funcignore); the __pycache__ folders it writes are.
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The Function App's Python (infra/app/functionapp.bicep: a test holds the two together).
FUNCTION_APP_PYTHON = (3, 11)


def package_sources(root: Path = ROOT) -> list[Path]:
    """The folders of the app's own code in the package: shared/ and every function folder."""
    return [root / "shared", *sorted(path.parent for path in root.glob("*/function.json"))]


def compile_bytecode(root: Path = ROOT) -> bool:
    """Hash-checked bytecode in the package, for every module of its own code; False if any of
    them does not compile."""
    sys.pycache_prefix = None  # into each __pycache__ of the package, whatever PYTHONPYCACHEPREFIX
    return compile_folders(package_sources(root))


def compile_folders(folders: list[Path]) -> bool:
    """Hash-checked bytecode for every module under `folders`, where imports will look for it."""
    ok = True
    for folder in folders:
        ok &= bool(compileall.compile_dir(
            folder, quiet=1, force=True,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        ))
    return ok


def bundle_softphone() -> int:
    """The console softphone's SDK into console/static/vendor/ (scripts/build_console.py), after
    `npm ci` when node_modules lacks it. Without npm the deploy goes on (the console works; its
    Phone view says the SDK is missing) unless TWILIO_TWIML_APP_SID says browser calls are
    wanted: then it stops here."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import build_console

    for attempt in ("as installed", "after npm ci"):
        if attempt == "after npm ci":
            npm = shutil.which("npm")
            if npm is None:
                break
            print("softphone: installing the pinned SDK (npm ci)")
            # A fixed command: npm from PATH, installing what package-lock.json pins, less the
            # dev dependencies: Azurite is not packaged (and asks for a newer Node.js).
            subprocess.run([npm, "ci", "--omit=dev", "--no-audit", "--no-fund"], cwd=ROOT,  # noqa: S603
                           check=False)
        try:
            build_console.build()
        except build_console.BuildError as error:
            problem = str(error)
            continue
        print("softphone: the Voice JavaScript SDK is in console/static/vendor/")
        return 0
    if os.environ.get("TWILIO_TWIML_APP_SID", "").strip():
        print(f"error: TWILIO_TWIML_APP_SID is set but the softphone's SDK cannot be packaged: "
              f"{problem} (Node.js and npm are needed to deploy browser calls)", file=sys.stderr)
        return 1
    print(f"note: the console's softphone SDK is not packaged ({problem}); the Phone view will "
          "say so. Install Node.js and npm to package it.")
    return 0


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description="azd's prepackage hook: check and stamp the flows, "
                            "bundle the softphone, compile the app's bytecode.").parse_args(argv)
    for setting, kind in (("CALL_FLOW", []), ("MESSAGE_FLOW", ["--messages"])):
        flow = os.environ.get(setting, "").strip()
        if not flow:
            continue
        # Only with a flow: the check needs the app's requirements (.venv); the rest, stdlib.
        sys.path.insert(0, str(ROOT / "scripts"))
        import check_flow

        # The settings azd hands the Bicep (its environment), never local.settings.json's. After
        # `--`, a value like "--help" is the file's name, not an option that skips the check.
        status = check_flow.main([*kind, "--stamp", "--environment-only", "--", flow])
        if status != 0:
            return status
    if bundle_softphone() != 0:
        return 1
    if not compile_bytecode():
        print("error: some of the app's modules do not compile (above)", file=sys.stderr)
        return 1
    version = ".".join(map(str, sys.version_info[:2]))
    print(f"bytecode: shared/ and {len(package_sources()) - 1} function folders, hash-checked, "
          f"for Python {version}")
    if sys.version_info[:2] != FUNCTION_APP_PYTHON:
        wanted = ".".join(map(str, FUNCTION_APP_PYTHON))
        print(f"note: the Function App runs Python {wanted}, which ignores this bytecode (it "
              f"compiles the app at each start instead): deploy from a {wanted} .venv to use it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
