#!/usr/bin/env bash
# Reconciliation after an outage (docs/benchmarks.md, "Lifecycle reconciliation after an
# outage"): a release st2-emulator holding COUNT executions that all ended while no adapter ran
# (--preload: succeeded core.noop runs, one second apart), a lifecycle checkpoint older than all
# of them, and a release adapter reporting every `core` execution to a local HTTP receiver.
# Prints the adapter's own reconciliation figure (list + in-flight re-reads, from its log line)
# and the time from the adapter's start until the receiver had the last event.
#
#   bench/reconcile.sh                  # COUNT=10000, release build in target-rel/
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-rel}"
COUNT="${COUNT:-10000}"
KEY="bench-api-key"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$ROOT" && cargo build --release --quiet --target-dir "$TARGET_DIR" \
    -p portarium-st2 -p st2-emulator --bin portarium-st2 --bin st2-emulator)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

ST2_PORT="$(free_port)"
"$TARGET_DIR/release/st2-emulator" --listen "127.0.0.1:$ST2_PORT" --api-key "$KEY" \
    --preload "$COUNT" 2>"$WORK/emulator.log" &
PIDS+=($!)
wait_port "$ST2_PORT"
ST2="http://127.0.0.1:$ST2_PORT"

# The receiver answers 202 to each POST and notes when the COUNT-th event arrived.
SINK_PORT="$(free_port)"
python3 - "$SINK_PORT" "$COUNT" "$WORK/done" <<'PY' &
import http.server, sys, threading, time
port, want, done = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ids, lock = set(), threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(202); self.end_headers()
        with lock:
            ids.add(body)
            if len(ids) == want:
                open(done, "w").write(repr(time.time()))
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
PIDS+=($!)
wait_port "$SINK_PORT"

# A checkpoint from before the outage: older than every preloaded execution, nothing in flight.
WATERMARK="$(date -u -d "@$(( $(date +%s) - COUNT - 3600 ))" +%Y-%m-%dT%H:%M:%SZ)"
VALUE="{\"version\":1,\"watermark\":\"$WATERMARK\",\"in_flight\":[],\"replica\":\"bench\"}"
curl -fsS -X PUT -H "St2-Api-Key: $KEY" -H 'Content-Type: application/json' \
    "$ST2/api/v1/keys/portarium-st2.bench.lifecycle.checkpoint" \
    -d "$(python3 -c 'import json,sys; print(json.dumps({"name":"portarium-st2.bench.lifecycle.checkpoint","value":sys.argv[1]}))' "$VALUE")" >/dev/null

cat >"$WORK/config.yaml" <<YAML
listen: 127.0.0.1:0
st2: {base_url: '$ST2', api_key: $KEY}
tenants: [{id: t1, api_token: tok}]
events:
  lifecycle:
    governed_packs: [core]
    governed_tenant: t1
    deployment: bench
  http: {url: 'http://127.0.0.1:$SINK_PORT/events', delivery: {queue_size: 1024}}
YAML

START="$(date +%s.%N)"
RUST_LOG=info NO_COLOR=1 "$TARGET_DIR/release/portarium-st2" serve --config "$WORK/config.yaml" \
    >"$WORK/adapter.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 3000); do [ -f "$WORK/done" ] && break; sleep 0.02; done
[ -f "$WORK/done" ] || { echo "the receiver never got $COUNT events" >&2; tail "$WORK/adapter.log" >&2; exit 1; }
LINE="$(grep 'lifecycle reconciled from the checkpoint' "$WORK/adapter.log")"
python3 - "$START" "$(cat "$WORK/done")" "$COUNT" "$LINE" <<'PY'
import re, sys
start, done, count, line = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
fields = dict(re.findall(r"(\w+)=(\d+)", line))
print(f"| executions | listed | reconciliation (adapter's elapsed_ms) | adapter start → last event received |")
print(f"|---|---|---|---|")
print(f"| {count} | {fields.get('listed')} | {int(fields.get('elapsed_ms', 0)) / 1000:.2f} s | {done - start:.2f} s |")
PY
