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

echo "ruff: lint"
"$VENV/bin/ruff" check .

echo "pytest"
exec "$VENV/bin/python" -m pytest "$@"
