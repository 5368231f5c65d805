#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), from the committed seed corpus
# (new inputs go to a scratch copy, so the repository stays clean). A crash stops the
# run with libFuzzer's report and the input under fuzz/artifacts/TARGET/.
#   fuzz/run.sh 60         # CI
#   fuzz/run.sh 14400      # four hours per target
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# FUZZ_SANITIZER=none skips AddressSanitizer (CI does, for build time).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in token_verify key_files config path_policy claims dpop_proof; do
    mkdir -p "$scratch/$target"
    cp -r "corpus/$target/." "$scratch/$target/"
    echo "--- fuzz $target for ${secs}s"
    log="$scratch/$target.log"
    status=0
    cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "$scratch/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)|ERROR|panicked|SUMMARY|Test unit written" "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -40 "$log" >&2
        echo "fuzz target $target failed (exit $status); a crashing input is in fuzz/artifacts/$target" >&2
        exit 1
    fi
done
