#!/usr/bin/env bash
# Runs the Autobahn|Testsuite in both roles and compares every case's verdict
# with expected/{server,client}.json:
#   server: the suite's fuzzing client against `sockeye serve` (echo mode);
#   client: io-tokio/examples/autobahn_client against the suite's fuzzing server.
#
#   tests/autobahn/run.sh            # check
#   tests/autobahn/run.sh --update   # record new verdicts after an improvement
#
# Needs ../shared/autobahn beside the checkout (it sets up its own venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
autobahn=$(cd "$root/../shared/autobahn" && pwd)
cd "$root"

cargo build --release --quiet -p sockeye-tokio --bin sockeye --example autobahn_client
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
./target/release/sockeye serve --bind "127.0.0.1:$port" --log-level warn >/tmp/sockeye-autobahn-testee.log 2>&1 &
testee=$!
trap 'kill "$testee" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

# 12.* and 13.* test permessage-deflate, which is not implemented yet.
exclude='12.*,13.*'
failed=0
check() { # ROLE STATUS REPORT
  if [ "$2" -gt 1 ]; then
    echo "autobahn $1: the suite did not complete (status $2); see $3/wstest.log" >&2
    failed=1
  elif ! python3 "$here/compare.py" "$3" "$here/expected/$1.json" $update; then
    failed=1
  fi
}
update=""
[ "${1:-}" = "--update" ] && update=--update

report=$(mktemp -d /tmp/sockeye-autobahn-server.XXXXXX)
status=0
"$autobahn/test-server.sh" -x "$exclude" -o "$report" -a sockeye "ws://127.0.0.1:$port" || status=$?
check server "$status" "$report"

report=$(mktemp -d /tmp/sockeye-autobahn-client.XXXXXX)
status=0
"$autobahn/test-client.sh" -x "$exclude" -o "$report" -a sockeye -- \
  ./target/release/examples/autobahn_client @URL@ @AGENT@ >/dev/null 2>&1 || status=$?
"$autobahn/summarize.py" "$report" | sed -n '2,6p' || true
check client "$status" "$report"
exit "$failed"
