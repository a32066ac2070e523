#!/usr/bin/env bash
# End to end, side by side (docs/benchmarks.md, "End to end vs st2client"): one release
# st2-emulator holding PRELOAD stored executions, then core.noop executions created and
# followed to completion by the official client (st2client) and by portarium-st2's dispatcher,
# against that same emulator, interleaved: st2client then the dispatcher at each concurrency,
# ROUNDS times; prints every run and the ratio of each pair.
#
#   bench/e2e-compare.sh        # COUNT=1000 CONCURRENCY=1,32 STEP_MS=1 PRELOAD=10000 ROUNDS=1
#   CARGO_TARGET_DIR=target-rel bench/e2e-compare.sh    # builds and runs from that target dir
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/python-env.sh"

API_KEY="bench-api-key"
COUNT="${COUNT:-1000}"
CONCURRENCY="${CONCURRENCY:-1,32}"
ROUNDS="${ROUNDS:-1}"
trap stop_emulator EXIT
ensure_venv
(cd "$ROOT" && cargo build --release --quiet --example loadtest)
BUILD_PROFILE=release start_emulator --api-key "$API_KEY" --step-ms "${STEP_MS:-1}" \
    --preload "${PRELOAD:-10000}"

py="$(mktemp)"
rs="$(mktemp)"
IFS=, read -ra LEVELS <<<"$CONCURRENCY"
for _ in $(seq "$ROUNDS"); do
    for c in "${LEVELS[@]}"; do
        "$VENV/bin/python" "$ROOT/bench/st2client_e2e.py" --base-url "$EMULATOR_URL" \
            --api-key "$API_KEY" --count "$COUNT" --concurrency "$c" --json | tee -a "$py"
        "$TARGET_DIR/release/examples/loadtest" e2e --st2-url "$EMULATOR_URL" --api-key "$API_KEY" \
            --n "$COUNT" --concurrency "$c" | tee -a "$rs"
    done
done

"$VENV/bin/python" - "$py" "$rs" <<'PY'
import json, sys
st2client = [(r["concurrency"], r["executions_per_s"]) for r in map(json.loads, open(sys.argv[1]))]
ours = []
for line in open(sys.argv[2]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 7 and cells[1].isdigit():
        ours.append((int(cells[1]), float(cells[3])))
print("\n| concurrency | st2client executions/s | portarium-st2 executions/s | ratio |")
print("|---|---|---|---|")
for (c, theirs), (c2, mine) in zip(st2client, ours):
    assert c == c2, (c, c2)
    print(f"| {c} | {theirs:.1f} | {mine:.1f} | {mine / theirs:.2f}x |")
PY
