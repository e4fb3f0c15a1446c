#!/usr/bin/env bash
# The project's one test command (README "Run the tests"; .ci/run calls exactly this).
# Creates its own virtual environment, installs what the tests need, then runs ruff and pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k signature
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=".venv"

if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

"${PIP[@]}" install -r requirements-dev.txt
# The Azure Functions Python worker for the function.json model, used by the tests and the local
# host. It declares Requires-Python >= 3.13 but runs unchanged on 3.11, hence the flags.
"${PIP[@]}" install --no-deps --ignore-requires-python azure-functions-runtime-v1==1.2.0

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

# With shellcheck on PATH, actionlint also checks the workflows' run: scripts (test_workflows).
# Installed from Debian only when missing and we are root (as in CI); otherwise those tests skip.
if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing shellcheck (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq shellcheck >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq shellcheck >/dev/null 2>&1; } \
    || echo "shellcheck could not be installed; workflow run: scripts go unchecked" >&2
fi
# actionlint is installed into the venv; put its bin first so the tests find it.
export PATH="$PWD/$VENV/bin:$PATH"

echo "ruff: lint"
"$VENV/bin/ruff" check .

echo "pytest"
exec "$VENV/bin/python" -m pytest "$@"
