#!/usr/bin/env bash
# SIGTERM with nothing queued, on a loaded machine (docs/benchmarks.md, "Shutdown"): runs the
# test events_durability::sigterm_with_nothing_queued_exits_at_once RUNS times while HOGS busy
# loops keep the cores busy, the test (and so the adapter it starts) at nice NICE, and prints
# each time from SIGTERM to the exit. With BEFORE=<another portarium-st2 binary> (e.g. one
# built from an older commit by `cargo test --no-run`) the runs alternate between it and this
# tree's binary, side by side under the same load.
#
#   bench/sigterm.sh                        # RUNS=10 HOGS=2 NICE=0
#   HOGS=2 NICE=19 BEFORE=/tmp/old-portarium-st2 bench/sigterm.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNS="${RUNS:-10}"
HOGS="${HOGS:-2}"
NICE="${NICE:-0}"
cd "$ROOT"
TEST_BIN="$(cargo test --test it --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "it" and m.get("executable"):
        print(m["executable"])')"
ADAPTER="$ROOT/target/debug/portarium-st2"
WORK="$(mktemp -d)"
cp "$ADAPTER" "$WORK/after"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    cp "$WORK/after" "$ADAPTER"
    rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq "$HOGS"); do sh -c 'while :; do :; done' & PIDS+=("$!"); done
VARIANTS=(after)
if [ -n "${BEFORE:-}" ]; then cp "$BEFORE" "$WORK/before"; VARIANTS=(before after); fi
for i in $(seq "$RUNS"); do
    for v in "${VARIANTS[@]}"; do
        # The test starts the binary cargo built for it: swap in the variant under test.
        cp "$WORK/$v" "$ADAPTER"
        took="$(nice -n "$NICE" "$TEST_BIN" events_durability::sigterm_with_nothing_queued --nocapture 2>&1 \
            | grep -o 'SIGTERM with nothing queued took .*' | head -1 || true)"
        echo "$v run $i: ${took:-failed}"
    done
done
