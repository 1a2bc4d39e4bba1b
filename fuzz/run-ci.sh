#!/usr/bin/env bash
# Runs fuzz targets for a while each; exits non-zero if any of them crashed.
#
#   fuzz/run-ci.sh [SECONDS_PER_TARGET [TARGET...]]   (default 60 s, every target)
#
# Installs cargo-fuzz if it is missing. Each target reads its committed corpus
# and writes new inputs to a temporary directory, so CI never writes into
# fuzz/corpus; a crash input is left in fuzz/artifacts/<target>/ and named in
# the output. Targets run one after another, one process each (FUZZ_CPU,
# default 0, pins them to one core so the machine's other core stays free).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
cpu="${FUZZ_CPU:-0}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

pin=()
if command -v taskset >/dev/null 2>&1; then
    pin=(taskset -c "$cpu")
fi

# The targets named, or every [[bin]] of fuzz/Cargo.toml.
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
if [ "${#targets[@]}" -eq 0 ]; then
    echo "no fuzz targets found" >&2
    exit 1
fi

"${pin[@]}" cargo fuzz build

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
for target in "${targets[@]}"; do
    mkdir -p "$work/$target"
    log="$work/$target.log"
    # The first corpus directory is the one libFuzzer writes new inputs to.
    if "${pin[@]}" cargo fuzz run "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed=1
    fi
    execs="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    coverage="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)"
    printf '%-20s %-5s %8s exec/s  %s\n' "$target" "$status" "${execs:-?}" "$coverage"
    if [ "$status" = CRASH ]; then
        grep -E 'panicked at|^SUMMARY|Test unit written to|ERROR: libFuzzer' "$log" | head -20 || true
        tail -40 "$log"
    fi
done
exit "$failed"
