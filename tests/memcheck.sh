#!/usr/bin/env bash
# The core's unit, handshake and property tests under valgrind memcheck: the
# stand-in for Miri, which this toolchain cannot install (stable, no miri
# component). It checks the core's two `unsafe` blocks (the fused
# copy-and-unmask into spare capacity, and unchecked UTF-8 views) for reads
# of uninitialised memory and out-of-bounds access. The fuzz targets add
# AddressSanitizer (cargo fuzz builds with it by default).
#
#   tests/memcheck.sh          # PROPTEST_CASES defaults to 24 here
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        apt-get install -y -qq valgrind >/dev/null
    else
        echo "memcheck: valgrind is missing and cannot be installed" >&2
        exit 1
    fi
fi

export PROPTEST_CASES="${PROPTEST_CASES:-24}"
mapfile -t binaries < <(
    cargo test -p sockeye-core --lib --test handshake --test properties --no-run \
        --message-format=json 2>/dev/null |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])'
)
[ "${#binaries[@]}" -eq 3 ] || { echo "memcheck: expected 3 test binaries, found ${#binaries[@]}" >&2; exit 1; }
for binary in "${binaries[@]}"; do
    printf 'memcheck %s\n' "$(basename "$binary")"
    valgrind --error-exitcode=99 --quiet "$binary" --test-threads=1 -q
done
echo "memcheck: no errors"
