#!/usr/bin/env bash
# End to end, side by side (docs/benchmarks.md, "End to end vs st2client"): one release
# st2-emulator, then 1,000 core.noop executions created and followed to completion by the
# official client (st2client) and by portarium-st2's dispatcher, sequentially and 32 at a
# time, against that same emulator; prints both and the ratios.
#
#   bench/e2e-compare.sh                 # COUNT=1000 CONCURRENCY=1,32 STEP_MS=1
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/python-env.sh"

API_KEY="bench-api-key"
COUNT="${COUNT:-1000}"
CONCURRENCY="${CONCURRENCY:-1,32}"
trap stop_emulator EXIT
ensure_venv
(cd "$ROOT" && cargo build --release --quiet --example loadtest)
BUILD_PROFILE=release start_emulator --api-key "$API_KEY" --step-ms "${STEP_MS:-1}"

py="$(mktemp)"
rs="$(mktemp)"
"$VENV/bin/python" "$ROOT/bench/st2client_e2e.py" --base-url "$EMULATOR_URL" --api-key "$API_KEY" \
    --count "$COUNT" --concurrency "$CONCURRENCY" --json | tee "$py"
"$ROOT/target/release/examples/loadtest" e2e --st2-url "$EMULATOR_URL" --api-key "$API_KEY" \
    --n "$COUNT" --concurrency "$CONCURRENCY" | tee "$rs"

"$VENV/bin/python" - "$py" "$rs" <<'PY'
import json, sys
st2client = {r["concurrency"]: r["executions_per_s"] for r in map(json.loads, open(sys.argv[1]))}
ours = {}
for line in open(sys.argv[2]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 7 and cells[1].isdigit():
        ours[int(cells[1])] = float(cells[3])
print("\n| concurrency | st2client executions/s | portarium-st2 executions/s | ratio |")
print("|---|---|---|---|")
for c in sorted(st2client):
    if c in ours:
        print(f"| {c} | {st2client[c]:.1f} | {ours[c]:.1f} | {ours[c] / st2client[c]:.1f}x |")
PY
