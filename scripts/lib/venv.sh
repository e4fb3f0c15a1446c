# shellcheck shell=bash
# Sourced by scripts/start.sh and scripts/test.sh: the one place that builds the project's venv.
# Creates .venv with $PYTHON (default python3) when missing, then installs the development
# requirements and the Azure Functions Python worker the tests and the local host run on.
# An existing .venv is reused, unless PYTHON is set (PYTHON=python3.12 scripts/start.sh) and
# names another Python version than the venv's: then .venv is rebuilt with it, and says so,
# rather than silently running the old one.

# Whether the caller chose PYTHON: only then does a venv of another version get rebuilt.
PYTHON_CHOSEN="${PYTHON:+1}"
PYTHON="${PYTHON:-python3}"
VENV=".venv"

# The X.Y.Z version of the Python $1; fails when it cannot be run.
python_version() {
  "$1" -c 'import platform; print(platform.python_version())' 2>/dev/null
}

# When PYTHON was chosen and the existing venv runs another version, say so in one line and
# rebuild it with PYTHON. Fails, with a clear message, when PYTHON cannot be run.
rebuild_venv_for_chosen_python() {
  if [ -z "$PYTHON_CHOSEN" ] || [ ! -x "$VENV/bin/python" ]; then
    return 0
  fi
  local wanted have
  if ! wanted="$(python_version "$PYTHON")" || [ -z "$wanted" ]; then
    echo "PYTHON=$PYTHON cannot be run: is it installed and on the PATH?" >&2
    return 1
  fi
  have="$(python_version "$VENV/bin/python")" || have=""
  [ "$wanted" != "$have" ] || return 0
  echo "PYTHON=$PYTHON is Python $wanted but $VENV has Python ${have:-(unusable)}: rebuilding $VENV with it"
  "$PYTHON" -m venv --clear "$VENV"
  VENV_FRESH=1
}

# Set when this run created or rebuilt the venv: everything is then installed from scratch.
VENV_FRESH=""

ensure_venv() {
  rebuild_venv_for_chosen_python
  if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
    VENV_FRESH=1
  fi
  # pip -q prints nothing while it works: say what is happening before the slow step.
  if [ -n "$VENV_FRESH" ]; then
    echo "Installing requirements-dev.txt and the Azure Functions Python worker into $VENV (pip; up to a minute)"
  else
    echo "Checking $VENV against requirements-dev.txt (pip; installs only what changed)"
  fi
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
  # The full phonenumbers (from before the switch to phonenumberslite) writes the same module
  # folder: remove both so the install below leaves exactly the lite one.
  if "${pip[@]}" show phonenumbers >/dev/null 2>&1; then
    "${pip[@]}" uninstall -y phonenumbers phonenumberslite
  fi
  "${pip[@]}" install -r requirements-dev.txt
  # The worker for the function.json model. It declares Requires-Python >= 3.13 but runs
  # unchanged on 3.11, hence the flags; requirements-dev.txt carries what it needs (protobuf).
  "${pip[@]}" install --no-deps --ignore-requires-python azure-functions-runtime-v1==1.2.0
}
