#!/usr/bin/env python3
"""Put the console's softphone SDK into its static files: Twilio's Voice JavaScript SDK, from npm
(package.json pins `@twilio/voice-sdk`; package-lock.json holds its hash), copied from
node_modules into console/static/vendor/ (git-ignored: npm is its only source, never a CDN).

- `twilio-voice-sdk.js`: the SDK's own browser bundle, `dist/twilio.min.js`, byte for byte. It is
  a classic (UMD) script that defines `globalThis.Twilio.Device`; the console adds it with a
  `<script src>` when the softphone is first opened (the CSP allows scripts from 'self' only).
  The name has one dot: the console serves only names like `vendor/name.js`.
- `twilio-voice-sdk-LICENSE.txt`: the SDK's LICENSE.md (Apache-2.0, with the notices of the
  rtcpeerconnection-shim and loglevel it bundles) and the licenses of `events` and `tslib`,
  which the bundle also carries. Not served (not a type the console serves), but deployed with
  the bundle (.funcignore leaves out *.md, hence .txt).

Run from anywhere: `python3 scripts/build_console.py` (stdlib only). Without the package in
node_modules, or with another version than package.json pins, it says to run `npm ci` and
exits 1. `--check` writes nothing: exits 1 when the vendor copy is missing or out of date.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "@twilio/voice-sdk"
BUNDLE = "dist/twilio.min.js"
# What the UMD bundle ends with when it sets the global: proof this is the browser bundle.
DEFINES_DEVICE = b"Twilio.Device=Twilio.Device||Voice.Device"
VENDOR = Path("console") / "static" / "vendor"
SCRIPT_NAME = "twilio-voice-sdk.js"
LICENSE_NAME = "twilio-voice-sdk-LICENSE.txt"
# Bundled into dist/ by the SDK's build, with the license files their packages ship.
BUNDLED_LICENSES = (("events", "LICENSE"), ("tslib", "LICENSE.txt"))


class BuildError(Exception):
    """What is wrong, in a sentence that says what to do."""


def pinned_version(root: Path) -> str:
    try:
        manifest = json.loads((root / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BuildError(f"cannot read {root / 'package.json'}: {error}") from error
    version = (manifest.get("dependencies") or {}).get(PACKAGE)
    if not isinstance(version, str) or not version[:1].isdigit():
        raise BuildError(f"package.json must pin {PACKAGE} to an exact version in "
                         f"\"dependencies\" (found {version!r})")
    return version


def _package_dir(root: Path, name: str, near: Path | None = None) -> Path | None:
    """Where node resolves `name` from `near` (a package's own node_modules first)."""
    for base in ([near / "node_modules"] if near else []) + [root / "node_modules"]:
        if (base / name / "package.json").is_file():
            return base / name
    return None


def sources(root: Path) -> tuple[bytes, bytes]:
    """(the bundle, the license text) from node_modules, checked against package.json."""
    version = pinned_version(root)
    sdk = root / "node_modules" / PACKAGE
    run_npm = f"run `npm ci` in {root} (package-lock.json pins {PACKAGE} {version})"
    try:
        installed = json.loads((sdk / "package.json").read_text(encoding="utf-8"))["version"]
        bundle = (sdk / BUNDLE).read_bytes()
        license_text = (sdk / "LICENSE.md").read_text(encoding="utf-8")
    except (OSError, ValueError, KeyError):
        raise BuildError(f"{PACKAGE} is not installed in {root / 'node_modules'} (or lacks "
                         f"{BUNDLE} or LICENSE.md): {run_npm}") from None
    if installed != version:
        raise BuildError(f"node_modules holds {PACKAGE} {installed}, package.json pins "
                         f"{version}: {run_npm}")
    if DEFINES_DEVICE not in bundle:
        raise BuildError(f"{sdk / BUNDLE} does not define Twilio.Device as a browser global: "
                         f"not the UMD bundle this script expects; check the SDK's dist/")
    parts = [f"{PACKAGE} {version}: {BUNDLE}, served by the console as {SCRIPT_NAME}.\n\n",
             license_text.rstrip() + "\n"]
    for name, filename in BUNDLED_LICENSES:
        found = _package_dir(root, name, sdk)
        text = (found / filename).read_text(encoding="utf-8") if found and (
            found / filename).is_file() else None
        if text is None:
            raise BuildError(f"the license of {name} (bundled by {PACKAGE}) is missing from "
                             f"node_modules: {run_npm}")
        parts.append(f"\n----------------------------------------------------------------\n"
                     f"This software includes {name} under the following license.\n\n"
                     f"{text.rstrip()}\n")
    return bundle, "".join(parts).encode("utf-8")


def _write(path: Path, data: bytes) -> bool:
    """Write `data` to `path` atomically; False (untouched) when it already holds it."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def build(root: Path = ROOT, check: bool = False) -> list[str]:
    """Copy (or with `check`, compare) the vendor files; what changed or is out of date."""
    bundle, license_text = sources(root)
    vendor = root / VENDOR
    wanted = {vendor / SCRIPT_NAME: bundle, vendor / LICENSE_NAME: license_text}
    if check:
        return [str(path) for path, data in wanted.items()
                if not path.is_file() or path.read_bytes() != data]
    return [str(path) for path, data in wanted.items() if _write(path, data)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the app's root (default: this "
                        "script's repository)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the "
                        "vendor copy is missing or differs from node_modules")
    args = parser.parse_args(argv)
    try:
        changed = build(args.root.resolve(), check=args.check)
    except BuildError as error:
        print(f"build_console: {error}", file=sys.stderr)
        return 1
    where = args.root.resolve() / VENDOR
    if args.check:
        if changed:
            print("build_console: out of date: " + ", ".join(changed) +
                  " (run scripts/build_console.py)", file=sys.stderr)
            return 1
        print(f"build_console: {where} is up to date")
        return 0
    print(f"build_console: {PACKAGE} {pinned_version(args.root.resolve())} -> {where}"
          + ("" if changed else " (already up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
