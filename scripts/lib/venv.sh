# shellcheck shell=bash
# Sourced by scripts/start.sh and scripts/test.sh: the one place that builds the project's venv.
# Creates .venv with $PYTHON (default python3) when missing, then installs the development
# requirements and the Azure Functions Python worker the tests and the local host run on.

PYTHON="${PYTHON:-python3}"
VENV=".venv"

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
  fi
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
  "${pip[@]}" install -r requirements-dev.txt
  # The worker for the function.json model. It declares Requires-Python >= 3.13 but runs
  # unchanged on 3.11, hence the flags; requirements-dev.txt carries what it needs (protobuf).
  "${pip[@]}" install --no-deps --ignore-requires-python azure-functions-runtime-v1==1.2.0
}
