#!/usr/bin/env bash
# st2client's side of the end-to-end benchmark (docs/benchmarks.md, "End to end vs st2client"):
# a release st2-emulator on a free loopback port, then bench/st2client_e2e.py against it.
#
#   bench/st2client-e2e.sh                      # 1,000 core.noop, sequential and 32 at a time
#   bench/st2client-e2e.sh --count 200 --json   # arguments go to st2client_e2e.py
#
# Env: STEP_MS (emulator status step, 1), BUILD_PROFILE (release), plus scripts/lib/python-env.sh's.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/python-env.sh"

API_KEY="bench-api-key"
trap stop_emulator EXIT
ensure_venv
BUILD_PROFILE="${BUILD_PROFILE:-release}" start_emulator --api-key "$API_KEY" --step-ms "${STEP_MS:-1}"
"$VENV/bin/python" "$ROOT/bench/st2client_e2e.py" --base-url "$EMULATOR_URL" --api-key "$API_KEY" "$@"
