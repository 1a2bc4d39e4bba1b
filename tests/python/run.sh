#!/usr/bin/env bash
# Interop with Python `websockets` (pinned in requirements.txt), both ways:
#   python client -> `sockeye serve`       (interop_client.py)
#   sockeye client -> python server        (io-tokio/examples/interop_client.rs
#                                           against interop_server.py)
# Prints a PASS/FAIL table and `python interop: N passed, M failed`; exits 1 if
# anything failed.
#
#   tests/python/run.sh
#
# The venv lives in $SOCKEYE_PYTHON_VENV (default ~/.cache/sockeye-python-venv)
# and is reused while requirements.txt is unchanged. Logs of every process go
# to a temporary directory, printed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

# ---- the venv ---------------------------------------------------------------
venv=${SOCKEYE_PYTHON_VENV:-$HOME/.cache/sockeye-python-venv}
python_bin=$(command -v python3.11 || command -v python3)
stamp="$venv/.sockeye-requirements"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating the venv in $venv"
  "$python_bin" -m venv "$venv"
fi
if ! cmp -s "$here/requirements.txt" "$stamp"; then
  echo "installing $(grep -v '^#' "$here/requirements.txt" | xargs) into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi
py="$venv/bin/python"

# ---- the Rust side ----------------------------------------------------------
cargo build --release --quiet -p sockeye-gateway --bin sockeye -p sockeye-tokio --example interop_client
sockeye="$root/target/release/sockeye"
rust_client="$root/target/release/examples/interop_client"

# ---- processes: every one we start is killed on exit -------------------------
logs=$(mktemp -d /tmp/sockeye-python-interop.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

free_port() {
  "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something listens on port $1 (up to 10 s).
wait_for_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1; see $logs" >&2
  return 1
}

# Waits up to $2 seconds for pid $1 to exit; prints its exit status, or
# "running" if it did not exit.
exit_status() {
  local pid=$1 deadline=$((SECONDS + $2)) status=0
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then echo running; return; fi
  wait "$pid" || status=$?
  echo "$status"
}

# start NAME COMMAND...: runs COMMAND in the background, logging to NAME.log;
# sets $started to its pid.
start() {
  local name=$1
  shift
  "$@" >"$logs/$name.log" 2>&1 &
  started=$!
  pids+=("$started")
}

# ---- results ----------------------------------------------------------------
results="$logs/results"
: >"$results"
# record DIRECTION LINE: LINE is `PASS name` or `FAIL name: reason`.
record() {
  printf '%s\t%s\n' "$1" "$2" >>"$results"
}
# collect DIRECTION FILE STATUS: records a client's lines; a client that failed
# without saying which scenario failed counts as a failure too.
collect() {
  local direction=$1 file=$2 status=$3
  grep -E '^(PASS|FAIL) ' "$file" | while IFS= read -r line; do record "$direction" "$line"; done
  if [ "$status" != 0 ] && ! grep -q '^FAIL ' "$file"; then
    record "$direction" "FAIL client-run: exited with status $status; see $file"
  fi
}

# ---- python client -> sockeye serve -----------------------------------------
direction="websockets client -> sockeye server"
echo "== $direction"
port=$(free_port)
start sockeye-default "$sockeye" serve --bind "127.0.0.1:$port" --log-level info
limited_port=$(free_port)
start sockeye-limited "$sockeye" serve --bind "127.0.0.1:$limited_port" --log-level info \
  --max-message-size 1024 --max-connections 1 --ping-interval 0.2
shutdown_port=$(free_port)
start sockeye-shutdown "$sockeye" serve --bind "127.0.0.1:$shutdown_port" --log-level info \
  --drain-timeout 5
shutdown_pid=$started
for p in "$port" "$limited_port" "$shutdown_port"; do wait_for_port "$p"; done

status=0
timeout 60 "$py" "$here/interop_client.py" \
  --url "ws://127.0.0.1:$port" --limited-url "ws://127.0.0.1:$limited_port" \
  --shutdown-url "ws://127.0.0.1:$shutdown_port" --shutdown-pid "$shutdown_pid" \
  >"$logs/python-client.out" 2>&1 || status=$?
collect "$direction" "$logs/python-client.out" "$status"
# The shutdown scenario sent SIGTERM: the server must drain and exit 0.
shutdown_status=$(exit_status "$shutdown_pid" 10)
if [ "$shutdown_status" = 0 ]; then
  record "$direction" "PASS sigterm-exit-0"
else
  record "$direction" "FAIL sigterm-exit-0: after SIGTERM the server's status is $shutdown_status"
fi

# ---- sockeye client -> python server ----------------------------------------
direction="sockeye client -> websockets server"
echo "== $direction"
py_port=$(free_port)
start python-server "$py" "$here/interop_server.py" --port "$py_port"
wait_for_port "$py_port"
status=0
timeout 60 "$rust_client" "ws://127.0.0.1:$py_port" >"$logs/rust-client.out" 2>&1 || status=$?
collect "$direction" "$logs/rust-client.out" "$status"

# ---- the table --------------------------------------------------------------
echo
printf '%-38s %-28s %s\n' "direction" "scenario" "result"
printf '%-38s %-28s %s\n' "---------" "--------" "------"
passed=0
failed=0
while IFS=$'\t' read -r direction line; do
  verdict=${line%% *}
  rest=${line#* }
  name=${rest%%:*}
  reason=""
  [ "$verdict" = FAIL ] && reason=${rest#*: }
  printf '%-38s %-28s %s%s\n' "$direction" "$name" "$verdict" "${reason:+  ($reason)}"
  if [ "$verdict" = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done <"$results"
echo
echo "logs: $logs"
echo "python interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
