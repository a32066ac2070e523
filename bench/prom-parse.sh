#!/usr/bin/env bash
# Python side of the metrics benchmark (docs/benchmarks.md): prometheus_client's text parser on
# a generated 100,000-series exposition, in the pinned virtualenv. Arguments go to prom_parse.py.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/python-env.sh"
ensure_venv
exec "$VENV/bin/python" "$ROOT/bench/prom_parse.py" "$@"
