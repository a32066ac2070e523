#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and prints one result line each.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   FUZZ_SECS=300 scripts/fuzz.sh dispatch_request config_yaml
#
# Every input is bounded: one that runs longer than FUZZ_TIMEOUT seconds (default 10) is a
# hang, and a process above FUZZ_RSS_MB (default 512) is out of memory; either fails the
# target like a crash. Files users hand to commands (config, manifest, packs policy, audit
# log) must never hang or grow without bound, as `manifest check` once did on a YAML typo.
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Targets start from the
# committed seeds in fuzz/seeds/<target>/ plus whatever fuzz/corpus/<target>/ gathered before.
# A crash leaves its input in fuzz/artifacts/<target>/ and makes the script exit non-zero;
# replay it with `cargo +nightly fuzz run <target> <file>`.
# The code under test is safe Rust, so the address sanitizer is off (-s none): panics and
# failed assertions are what the targets look for; a sanitizer would only slow the runs.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

FUZZ_SECS="${FUZZ_SECS:-60}"
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-10}"
FUZZ_RSS_MB="${FUZZ_RSS_MB:-512}"
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "== building fuzz targets"
cargo +nightly fuzz build -s none >/dev/null 2>&1 || cargo +nightly fuzz build -s none

failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    [[ -d "seeds/$t" ]] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    log="$(mktemp -t "fuzz-$t.XXXXXX")"
    started=$SECONDS
    rc=0
    cargo +nightly fuzz run -s none "$t" "corpus/$t" -- \
        -max_total_time="$FUZZ_SECS" -timeout="$FUZZ_TIMEOUT" -rss_limit_mb="$FUZZ_RSS_MB" \
        -print_final_stats=1 -close_fd_mask=3 >"$log" 2>&1 || rc=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    per_sec="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
    corpus="$(find "corpus/$t" -type f | wc -l)"
    if [[ "$rc" == 0 ]]; then
        echo "PASS  $t: ${execs:-?} execs in $((SECONDS - started)) s (${per_sec:-?}/s), coverage ${cov:-?}, corpus $corpus, peak RSS ${rss:-?} MB (limit $FUZZ_RSS_MB), 0 crashes, 0 hangs"
    else
        failed=$((failed + 1))
        echo "FAIL  $t: crash, hang (> ${FUZZ_TIMEOUT} s) or out of memory (> $FUZZ_RSS_MB MB) after ${execs:-?} execs (exit $rc); input in fuzz/artifacts/$t/"
        grep -A15 -m1 'panicked\|ERROR: libFuzzer' "$log" | sed 's/^/      | /'
    fi
    rm -f "$log"
done
echo "${#targets[@]} targets, $failed crashed"
[[ "$failed" == 0 ]]
