#!/usr/bin/env bash
# The project's run command (README "Run locally"): serves the app on http://localhost:7071.
# Uses Azure Functions Core Tools (`func start`) when installed; otherwise falls back to the
# local worker host (python -m devhost.server), which runs the same Python worker Azure runs.
# Creates .venv and installs what the app and the worker need, as scripts/test.sh does.
# When AzureWebJobsStorage (the environment's, else local.settings.json's) is
# UseDevelopmentStorage=true, starts Azurite on 127.0.0.1:10000-10002 unless something answers
# there already, and stops it when the host stops (scripts/lib/azurite.sh).
# Extra arguments go to `func start` or to the local host, e.g. scripts/start.sh --port 7072.
# --twilio-api URL (REST requests to a local stand-in of Twilio's API, python -m devhost.standin)
# --host-key KEY (function keys enforced, for a tunnel) and --allow-host NAME (another Host name it
# answers) are the local host's options: with one, the local host serves even where Core Tools is
# installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Options only the local worker host has: with one, it serves even where Core Tools is installed
# (func start has no stand-in, and does not enforce function keys locally).
LOCAL_ONLY=""
for arg in "$@"; do
  case "$arg" in
    --twilio-api | --twilio-api=*) LOCAL_ONLY="--twilio-api" ;;
    --host-key | --host-key=*) LOCAL_ONLY="${LOCAL_ONLY:---host-key}" ;;
    --allow-host | --allow-host=*) LOCAL_ONLY="${LOCAL_ONLY:---allow-host}" ;;
  esac
done

if [ -n "$LOCAL_ONLY" ]; then
  USE_FUNC=0
  # Must stay the first line of output: it says which host is about to serve the app.
  echo "$LOCAL_ONLY is an option of the local worker host: serving with python -m devhost.server (not func start)."
elif command -v func >/dev/null 2>&1; then
  USE_FUNC=1
else
  USE_FUNC=0
  # Must stay the first line of output: it says which host is about to serve the app.
  echo "Azure Functions Core Tools (func) not found: falling back to the local worker host (python -m devhost.server)."
  echo "  To use Core Tools instead: npm install -g azure-functions-core-tools@4 (or see"
  echo "  https://learn.microsoft.com/azure/azure-functions/functions-run-local), then run this again."
fi

# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
ensure_venv

# Storage: the effective AzureWebJobsStorage decides whether Azurite is needed (never printed:
# a real connection string holds an account key).
# shellcheck source=scripts/lib/azurite.sh
source scripts/lib/azurite.sh
storage="$(effective_storage_connection "$VENV/bin/python")"
start_local_storage "$storage"
# The console softphone's SDK, from node_modules (npm ci) into console/static/vendor/. Without it
# the app starts all the same (a note, on stdout: stderr is for what stops this script).
"$VENV/bin/python" scripts/build_console.py 2>&1 \
  || echo "The console's Phone view will say its SDK is missing (run npm ci, then start again)."

# Serves the app with "$@": exec'd as before, unless Azurite was started here and must be
# stopped after the host (run_with_azurite: Ctrl+C and SIGTERM stop both).
run_host() {
  if [ -z "$AZURITE_PID" ]; then
    exec "$@"
  fi
  local status=0
  run_with_azurite "$@" || status=$?
  exit "$status"
}

# The worker runtime is not a secret: without local.settings.json, `func start` would not know it.
export FUNCTIONS_WORKER_RUNTIME="${FUNCTIONS_WORKER_RUNTIME:-python}"

if [ "$USE_FUNC" = 1 ]; then
  if [ ! -f local.settings.json ]; then
    echo "local.settings.json not found: continuing with the environment only (webhooks answer 403"
    echo "  until TWILIO_AUTH_TOKEN is set). To create it: cp local.settings.json.example local.settings.json,"
    echo "  then put your Twilio credentials in it (it is git-ignored)."
  fi
  # Core Tools runs its own copy of the worker with the Python it finds first: this venv's.
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  run_host func start "$@"
fi

# The local host reads local.settings.json itself (and says so when it is missing).
run_host "$VENV/bin/python" -m devhost.server "$@"
