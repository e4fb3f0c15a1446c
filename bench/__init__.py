"""Dev-only benchmark of the function app against a floor measured in the same run (issue 6).

`python -m bench` (or `scripts/bench.sh`) measures cold start, warm webhook latency and
make_call concurrency through the real Azure Functions Python worker (devhost), each as a ratio
against a floor app served by the same host, plus a Flask peer for reference. Nothing here is
deployed (`.funcignore` excludes `bench/`), and nothing here talks to Twilio: make_call is
pointed at a local stand-in of the Calls endpoint.

This package's `__init__` stays empty of imports on purpose: the cold-start children run as
`python -m bench.cold`, and whatever this file imported would be charged to both sides.
"""
