#!/usr/bin/env bash
# The benchmark (BENCHMARKS.md; issue 6): cold start, warm webhook latency and make_call
# concurrency, each against a floor app measured in the same run, plus a Flask peer.
# Builds .venv as scripts/test.sh does (scripts/lib/venv.sh), adds requirements-bench.txt, then
# runs `python -m bench`. Extra arguments go to it (--help lists them). The output is also
# written to bench/results/latest.txt (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
ensure_venv
"$VENV/bin/python" -m pip --disable-pip-version-check -q install -r requirements-bench.txt

mkdir -p bench/results
"$VENV/bin/python" -m bench "$@" | tee bench/results/latest.txt
