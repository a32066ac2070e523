#!/usr/bin/env bash
# Proof that st2-emulator speaks st2's API: the official st2 CLI (st2client from PyPI, unmodified)
# runs its everyday commands against it and every answer is checked.
#
#   scripts/st2client-compat.sh            # one PASS/FAIL line per check, then "N passed, N failed"
#
# Needs python3 (3.8-3.11; st2client 3.9.0) with venv, cargo, and PyPI on the first run only.
# Env: ST2CLIENT_VERSION (3.9.0), ST2CLIENT_VENV (target/st2client-venv), PYTHON (python3),
#      CMD_TIMEOUT (seconds per CLI call, 60).
set -euo pipefail
source "$(dirname "$0")/lib/python-env.sh"

CMD_TIMEOUT="${CMD_TIMEOUT:-60}"
API_KEY="compat-api-key"
USER_NAME="st2admin"
PASSWORD="Ch@ngeMe"

WORK="$(mktemp -d -t st2client-compat.XXXXXX)"
cleanup() {
    stop_emulator
    rm -rf "$WORK"
}
trap cleanup EXIT

ensure_venv
ST2="$VENV/bin/st2"
PY="$VENV/bin/python"
start_emulator --api-key "$API_KEY" --user "$USER_NAME:$PASSWORD"
export_st2_urls
# The CLI keeps its config and cached tokens under ~/.st2: give it a home of its own.
export HOME="$WORK/home"
mkdir -p "$HOME"
export ST2_API_KEY="$API_KEY"
unset ST2_AUTH_TOKEN ST2_CONFIG_FILE

passed=0
failed=0
n=0
OUT=""

# check NAME WANT_RC PY_EXPR st2-args...
# Runs `st2 args...` and passes when it exits WANT_RC and PY_EXPR is true. In PY_EXPR, `out` is
# stdout, `err` stderr, `d` stdout parsed as JSON (None if it is not JSON). OUT keeps stdout's file.
check() {
    local name="$1" want_rc="$2" expr="$3"
    shift 3
    n=$((n + 1))
    OUT="$WORK/$n.out"
    local rc=0 why=""
    timeout "$CMD_TIMEOUT" "$ST2" "$@" >"$OUT" 2>"$WORK/$n.err" || rc=$?
    if [[ "$rc" != "$want_rc" ]]; then
        why="exit status $rc, expected $want_rc"
    else
        why="$("$PY" - "$OUT" "$WORK/$n.err" "$expr" <<'EOF'
import json, re, sys
# The CLI colours keys even when not on a terminal; compare plain text.
plain = lambda path: re.sub(r"\x1b\[[0-9;]*m", "", open(path).read())
out, err = plain(sys.argv[1]), plain(sys.argv[2])
try:
    # A workflow's -j output is its JSON followed by the task table: take the first document.
    d = json.JSONDecoder().raw_decode(out.strip())[0]
except ValueError:
    d = None
try:
    ok = eval(sys.argv[3])
except Exception as e:  # a missing key is a failed check, not a crash
    ok, why = False, "%s: %s" % (type(e).__name__, e)
else:
    why = "condition false: " + sys.argv[3]
if not ok:
    print(why)
EOF
)"
    fi
    if [[ -z "$why" ]]; then
        passed=$((passed + 1))
        echo "PASS  $name"
    else
        failed=$((failed + 1))
        echo "FAIL  $name: $why"
        echo "      \$ st2 $*"
        sed 's/^/      | /' "$OUT" "$WORK/$n.err" | head -40
    fi
}

# field EXPR: evaluate a Python expression on the last command's JSON output (`d`).
field() {
    "$PY" -c 'import json,sys; d=json.JSONDecoder().raw_decode(open(sys.argv[1]).read().strip())[0]; print(eval(sys.argv[2]))' "$OUT" "$1" 2>/dev/null || true
}

# The id that `st2 run -a` prints in its "st2 execution get <id>" hint.
async_id() {
    sed -n 's/^ *st2 execution get \([0-9a-f]\{24\}\)$/\1/p' "$OUT" | head -1
}

echo "== st2 CLI $("$ST2" --version 2>&1) against st2-emulator"

# --- API key -------------------------------------------------------------------------------
check "whoami with ST2_API_KEY" 0 \
    '"Currently logged in as \"st2admin\"" in out and "Authentication method: API key" in out' \
    whoami

check "run core.noop" 0 \
    'd["status"] == "succeeded" and d["action"]["ref"] == "core.noop" and d["context"]["user"] == "st2admin"' \
    run core.noop -j
NOOP_ID="$(field 'd["id"]')"

check "run core.local cmd=..." 0 \
    'd["status"] == "succeeded" and d["result"]["stdout"] == "hello compat" and d["result"]["return_code"] == 0' \
    run core.local "cmd=echo hello compat" -j
LOCAL_ID="$(field 'd["id"]')"

check "run core.local with a failing command exits 1" 1 \
    'd["status"] == "failed" and d["result"]["return_code"] == 3' \
    run core.local "cmd=echo oops >&2; exit 3" -j

check "run of a missing action" 1 \
    '"Resource with id or reference \"core.nope\" doesn\x27t exist." in out + err' \
    run core.nope

check "run without a required parameter" 1 \
    "\"'cmd' is a required property\" in out + err" \
    run core.local

check "run with a parameter of the wrong type" 1 \
    "\"invalid literal for int() with base 10: 'soon'\" in out + err" \
    run core.local "cmd=true" "timeout=soon"

check "run a workflow (orquesta)" 0 \
    'd["status"] == "succeeded" and d["result"]["output"]["greeting"] == "Compat, All your base are belong to us!"' \
    run examples.orquesta-sequential name=Compat -j
WF_ID="$(field 'd["id"]')"

check "execution get of a workflow lists its tasks" 0 \
    'out.count("core.echo") == 3 and all(t in out for t in ("task1", "task2", "task3"))' \
    execution get "$WF_ID"

check "execution get -j" 0 \
    "d['id'] == '$NOOP_ID' and d['status'] == 'succeeded' and [l['status'] for l in d['log']] == ['requested', 'scheduled', 'running', 'succeeded']" \
    execution get "$NOOP_ID" -j

check "execution get (table)" 0 \
    "'$LOCAL_ID' in out and 'succeeded' in out and 'hello compat' in out" \
    execution get "$LOCAL_ID"

check "execution get --attr" 0 \
    '"result.stdout: hello compat" in out' \
    execution get "$LOCAL_ID" --attr result.stdout

check "execution get of an unknown id" 1 \
    '"Action Execution \"0123456789abcdef01234567\" is not found." in out + err' \
    execution get 0123456789abcdef01234567

check "execution list -j shows top-level executions only" 0 \
    "{'$NOOP_ID', '$LOCAL_ID', '$WF_ID'} <= {e['id'] for e in d} and len(d) == 4" \
    execution list -n 50 -j

check "execution list --action --status" 0 \
    "len(d) == 1 and d[0]['id'] == '$LOCAL_ID'" \
    execution list --action core.local --status succeeded -j

check "execution list (table)" 0 \
    "'$NOOP_ID' in out and 'core.noop' in out" \
    execution list

check "execution tail of a finished execution" 0 \
    '"hello compat" in out and "has completed (status=succeeded)" in out' \
    execution tail "$LOCAL_ID"

check "run -a of a long command" 0 \
    '"st2 execution get " in out' \
    run core.local "cmd=sleep 60" -a
SLEEP_ID="$(async_id)"

check "execution cancel of a running execution" 0 \
    "'action execution with id $SLEEP_ID canceled' in out" \
    execution cancel "$SLEEP_ID"

# Canceling passes through "canceling" on its way to "canceled": wait for it, bounded.
for _ in $(seq 50); do
    timeout "$CMD_TIMEOUT" "$ST2" execution get "$SLEEP_ID" -j >"$WORK/status.json" 2>/dev/null || true
    grep -q '"status": "canceled"' "$WORK/status.json" && break
    sleep 0.2
done
check "canceled execution ends canceled" 0 \
    "d['status'] == 'canceled'" \
    execution get "$SLEEP_ID" -j

check "execution re-run" 0 \
    "d['id'] != '$LOCAL_ID' and d['status'] == 'succeeded' and d['result']['stdout'] == 'hello compat'" \
    execution re-run "$LOCAL_ID" -j

check "execution re-run with a parameter override" 0 \
    "d['parameters'] == {'cmd': 'echo again'} and d['result']['stdout'] == 'again'" \
    execution re-run "$LOCAL_ID" "cmd=echo again" -j

check "action list" 0 \
    "{'core.noop', 'core.local', 'core.echo'} <= {a['ref'] for a in d}" \
    action list -j

check "action list --pack" 0 \
    "d and all(a['pack'] == 'core' for a in d)" \
    action list -p core -j

check "action get" 0 \
    "d['ref'] == 'core.local' and d['runner_type'] == 'local-shell-cmd' and d['parameters']['cmd']['required'] is True" \
    action get core.local -j

check "pack list" 0 \
    "{'core', 'examples'} <= {p['ref'] for p in d}" \
    pack list -j

check "pack get" 0 \
    "d['name'] == 'core' and d['version']" \
    pack get core -j

check "a wrong API key is refused" 1 \
    '"401" in out + err' \
    execution list --api-key not-the-key

# --- username/password ---------------------------------------------------------------------
unset ST2_API_KEY

check "no credentials at all is refused" 1 \
    '"Unauthorized" in out + err' \
    execution list

check "auth with a wrong password" 1 \
    '"401 Client Error" in out + err' \
    auth "$USER_NAME" -p wrong-password

check "auth -t prints a token" 0 \
    'len(out.strip()) == 32' \
    auth "$USER_NAME" -p "$PASSWORD" -t
TOKEN="$(tr -d '[:space:]' <"$OUT")"

export ST2_AUTH_TOKEN="$TOKEN"
check "run core.noop with ST2_AUTH_TOKEN" 0 \
    "d['status'] == 'succeeded' and d['context']['user'] == '$USER_NAME'" \
    run core.noop -j
unset ST2_AUTH_TOKEN

check "login" 0 \
    '"Logged in as st2admin" in out' \
    login "$USER_NAME" -p "$PASSWORD"

check "whoami after login" 0 \
    '"Authentication method: authentication token" in out and "Authentication token expire time: " in out' \
    whoami

check "execution list with the cached login token" 0 \
    "'$NOOP_ID' in {e['id'] for e in d}" \
    execution list -n 50 -j

# --- the st2client container of docker-compose.st2.yml --------------------------------------
# Its start command writes ~/.st2/config from ST2CLIENT_USER / ST2CLIENT_PASSWORD. Run that
# command, taken from the compose file, in a fresh home: the CLI logs in with what it wrote.
export HOME="$WORK/st2client-home"
mkdir -p "$HOME"
"$PY" - "$ROOT/docker-compose.st2.yml" >"$WORK/st2client-start.sh" <<'EOF'
import sys, yaml
script = yaml.safe_load(open(sys.argv[1]))["services"]["st2client"]["command"][2]
tail = "&& exec sleep infinity"
assert script.endswith(tail), script
print(script[: -len(tail)].replace("$$", "$"))
EOF
ST2CLIENT_USER="$USER_NAME" ST2CLIENT_PASSWORD="$PASSWORD" bash "$WORK/st2client-start.sh"

check "execution list with the config the compose st2client container writes" 0 \
    "'$NOOP_ID' in {e['id'] for e in d}" \
    execution list -n 50 -j

echo "$passed passed, $failed failed"
[[ "$failed" == 0 ]]
