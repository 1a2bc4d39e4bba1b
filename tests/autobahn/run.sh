#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client against our echo testee and
# compares every case's verdict with expected/server.json.
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

cargo build --release --quiet -p sockeye-core --example blocking_echo
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
./target/release/examples/blocking_echo "127.0.0.1:$port" >/tmp/sockeye-autobahn-testee.log 2>&1 &
testee=$!
trap 'kill "$testee" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

report=$(mktemp -d /tmp/sockeye-autobahn.XXXXXX)
# 12.* and 13.* test permessage-deflate, which is not implemented yet.
status=0
"$autobahn/test-server.sh" -x '12.*,13.*' -o "$report" -a sockeye "ws://127.0.0.1:$port" || status=$?
if [ "$status" -gt 1 ]; then
  echo "autobahn: the suite did not complete (status $status); see $report/wstest.log" >&2
  exit "$status"
fi
python3 "$here/compare.py" "$report" "$here/expected/server.json" "$@"
