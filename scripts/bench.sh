#!/usr/bin/env bash
# The benchmark (BENCHMARKS.md; issue 6): cold start, warm webhook latency and make_call
# concurrency, each against a floor app measured in the same run, plus a Flask peer.
# Builds .venv as scripts/test.sh does (scripts/lib/venv.sh), adds requirements-bench.txt and
# Azurite (scripts/lib/azurite.sh), then runs `python -m bench`. Extra arguments go to it (--help lists them). The output of a run is
# also written to bench/results/latest.txt (git-ignored); --help and a run that prints nothing
# (a usage error) leave the last results there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Whether the arguments ask `python -m bench` for its help (argparse takes --h, --he, --hel).
wants_help() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      --) return 1 ;;
      -h | --h | --he | --hel | --help) return 0 ;;
    esac
  done
  return 1
}

# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
ensure_venv
"$VENV/bin/python" -m pip --disable-pip-version-check -q install -r requirements-bench.txt

if wants_help "$@"; then
  exec "$VENV/bin/python" -m bench "$@"
fi

# Azurite (npm, pinned in package-lock.json): the storage of the cold, warm and broadcast phases
# (sms_url records every text; broadcasts queue and record). Installed as scripts/test.sh does.
# shellcheck source=scripts/lib/azurite.sh
source scripts/lib/azurite.sh
if ! ensure_azurite "the benchmark's cold, warm and broadcast phases need it"; then
  exit 1
fi
export AZURITE_BIN

mkdir -p bench/results
# Written aside, then moved: a run that prints nothing does not replace the last results.
partial="bench/results/.latest.txt.partial"
trap 'rm -f "$partial"' EXIT
status=0
"$VENV/bin/python" -m bench "$@" | tee "$partial" || status=$?
if [ -s "$partial" ]; then
  mv "$partial" bench/results/latest.txt
fi
exit "$status"
