# Shared by scripts/st2client-compat.sh and bench/*.sh (sourced, not run): a virtualenv with the
# official st2client (and prometheus_client for the metrics benchmark) at pinned versions, and
# st2-emulator built and started on a free loopback port.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ST2CLIENT_VERSION="${ST2CLIENT_VERSION:-3.9.0}"
PROMETHEUS_CLIENT_VERSION="${PROMETHEUS_CLIENT_VERSION:-0.26.0}"
VENV="${ST2CLIENT_VENV:-$ROOT/target/st2client-venv}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

# Creates the virtualenv once; re-installs only when the pinned versions are missing, so reruns
# need no network.
ensure_venv() {
    local python="${PYTHON:-python3}"
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "== creating virtualenv $VENV ($("$python" --version 2>&1))" >&2
        "$python" -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" - "$ST2CLIENT_VERSION" "$PROMETHEUS_CLIENT_VERSION" <<'EOF' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(0 if (version("st2client"), version("prometheus_client")) == tuple(sys.argv[1:3]) else 1)
EOF
        echo "== pip install st2client==$ST2CLIENT_VERSION prometheus_client==$PROMETHEUS_CLIENT_VERSION" >&2
        "$VENV/bin/pip" install --quiet --disable-pip-version-check \
            -c "$ROOT/scripts/st2client-constraints.txt" \
            "st2client==$ST2CLIENT_VERSION" "prometheus_client==$PROMETHEUS_CLIENT_VERSION"
    fi
}

# Builds st2-emulator (release with BUILD_PROFILE=release) and starts it on 127.0.0.1:<free port>
# with the given extra arguments. Sets EMULATOR_PID, EMULATOR_URL and EMULATOR_LOG (stdout; its
# stderr is EMULATOR_LOG.err); the caller's EXIT trap must call stop_emulator. Gives up after
# 30 s if the ready line never comes.
start_emulator() {
    local profile="${BUILD_PROFILE:-dev}" dir=debug log
    [[ "$profile" == release ]] && dir=release
    echo "== building st2-emulator ($profile)" >&2
    cargo build --quiet --locked --profile "$profile" -p st2-emulator --bin st2-emulator \
        --manifest-path "$ROOT/Cargo.toml"
    log="$(mktemp -t st2-emulator.XXXXXX)"
    EMULATOR_LOG="$log"
    "$TARGET_DIR/$dir/st2-emulator" --listen 127.0.0.1:0 "$@" >"$log" 2>"$log.err" &
    EMULATOR_PID=$!
    local _
    for _ in $(seq 300); do
        if grep -q '^st2-emulator listening on ' "$log"; then
            EMULATOR_URL="$(sed -n 's/^st2-emulator listening on //p' "$log")"
            echo "== st2-emulator $EMULATOR_URL (pid $EMULATOR_PID)" >&2
            return 0
        fi
        if ! kill -0 "$EMULATOR_PID" 2>/dev/null; then
            echo "st2-emulator exited early:" >&2
            cat "$log.err" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "st2-emulator did not report ready within 30 s; its log:" >&2
    cat "$log.err" >&2
    return 1
}

stop_emulator() {
    if [[ -n "${EMULATOR_PID:-}" ]] && kill -0 "$EMULATOR_PID" 2>/dev/null; then
        kill "$EMULATOR_PID" 2>/dev/null || true
        wait "$EMULATOR_PID" 2>/dev/null || true
    fi
    if [[ -n "${EMULATOR_LOG:-}" ]]; then
        rm -f "$EMULATOR_LOG" "$EMULATOR_LOG.err"
    fi
}

# The st2 CLI's endpoints for an st2 behind nginx, all on the emulator's one port.
export_st2_urls() {
    export ST2_BASE_URL="$EMULATOR_URL"
    export ST2_API_URL="$EMULATOR_URL/api/v1"
    export ST2_AUTH_URL="$EMULATOR_URL/auth/v1"
    export ST2_STREAM_URL="$EMULATOR_URL/stream/v1"
}
