#!/usr/bin/env bash
# The project's one test command (README "Run the tests"; .ci/run calls exactly this).
# Creates its own virtual environment, installs what the tests need, then runs ruff and pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k signature
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
ensure_venv

# checkov (tests/test_infra.py) pins many packages that would clash with ours: it gets its own
# venv, made or remade only when infra/requirements-checkov.txt changes.
CHECKOV_VENV=".venv-checkov"
if ! cmp -s infra/requirements-checkov.txt "$CHECKOV_VENV/requirements-checkov.txt"; then
  echo "Installing checkov into $CHECKOV_VENV"
  rm -rf "$CHECKOV_VENV"
  "$PYTHON" -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/python" -m pip --disable-pip-version-check -q install \
    -r infra/requirements-checkov.txt
  cp infra/requirements-checkov.txt "$CHECKOV_VENV/requirements-checkov.txt"
fi
export CHECKOV_BIN="$PWD/$CHECKOV_VENV/bin/checkov"

# Azurite (npm, pinned in package-lock.json) is the storage of the tests that need one (the
# `azurite` fixture); npm ci runs only when it is missing or package-lock.json changed. Without
# Node.js those tests skip, except with CI=true, where they must run: then this stops here.
# CI=true (any case): what the tests need must be there, or this stops.
in_ci() {
  [ "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" = true ]
}

# shellcheck source=scripts/lib/azurite.sh
source scripts/lib/azurite.sh
if ! ensure_azurite "the tests that need storage skip (with CI=true they fail)" && in_ci; then
  exit 1
fi
export AZURITE_BIN

# The console softphone's SDK (npm, pinned in package-lock.json; npm ci above installs it) into
# console/static/vendor/, as the deploy's package step does. Without it the softphone's tests
# skip, except with CI=true, where this stops here.
if ! "$VENV/bin/python" scripts/build_console.py && in_ci; then
  exit 1
fi

# Installs the Debian package $1 when its command is missing and we are root (as in CI); $2
# says what goes without it when it cannot be installed.
apt_install_if_missing() {
  if ! command -v "$1" >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing $1 (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "$1" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$1" >/dev/null 2>&1; } \
      || echo "$1 could not be installed; $2" >&2
  fi
}
# With shellcheck on PATH, actionlint also checks the workflows' run: scripts (test_workflows).
apt_install_if_missing shellcheck "workflow run: scripts go unchecked"
# The console's browser tests drive Debian's Chromium through Playwright (never a browser
# Playwright downloads); without it they skip, except with CI=true, where they fail.
apt_install_if_missing chromium "the console's browser tests skip (with CI=true they fail)"

# actionlint is installed into the venv; put its bin first so the tests find it.
export PATH="$PWD/$VENV/bin:$PATH"

echo "ruff: lint"
"$VENV/bin/ruff" check .

echo "pytest"
exec "$VENV/bin/python" -m pytest "$@"
