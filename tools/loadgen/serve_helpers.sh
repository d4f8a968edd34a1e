# shellcheck shell=bash
# shellcheck disable=SC2034  # LG_* are results for the sourcing script
# Sourced by scripts/loadtest, scripts/soak and tests/openai_client/run_against_server.sh:
# build the rwkv-edge binary, start `rwkv-edge serve` on a free loopback port, wait until
# /health says 200, stop it. Bash only; the caller sets `set -euo pipefail`.
#
#   . "$RWKV_EDGE_ROOT/tools/loadgen/serve_helpers.sh"
#   lg_build "$RWKV_EDGE_ROOT/build"            # sets LG_BIN
#   lg_start_server "$LG_BIN" "$tmp" --model M  # sets LG_SERVER_PID, LG_SERVER_PORT, LG_SERVER_URL
#   ... "$LG_BIN" loadgen --url "$LG_SERVER_URL" ...
#   lg_stop_server                              # sets LG_SERVER_STATUS (exit status of serve)

# Seconds to wait for /health 200 after starting the server.
LG_HEALTH_TIMEOUT="${LG_HEALTH_TIMEOUT:-120}"
LG_SERVER_PID=""
LG_SERVER_PORT=""
LG_SERVER_URL=""
LG_SERVER_LOG=""
LG_SERVER_STATUS=""

# lg_build BUILD_DIR: configures (Release, if not configured yet) and builds the rwkv-edge target
# only; installs missing Debian build packages when root (scripts/deps.sh). Sets LG_BIN.
lg_build() {
  local dir="$1"
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  RWKV_EDGE_ROOT="${RWKV_EDGE_ROOT:-$root}"
  # shellcheck source=/dev/null
  . "$root/scripts/deps.sh"
  # shellcheck disable=SC2086  # the list is word-split on purpose
  ensure_packages $RWKV_EDGE_BUILD_PACKAGES
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build "$dir" -j"$(nproc)" --target rwkv-edge >/dev/null
  LG_BIN="$dir/rwkv-edge"
}

# lg_free_port: prints a loopback TCP port nobody listens on (probe; racy only in theory).
lg_free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "lg_free_port: no free port found" >&2
  return 1
}

# lg_start_server BIN WORKDIR [serve args...]: starts `BIN serve` on 127.0.0.1 and a free port,
# state in WORKDIR/state, log in WORKDIR/serve.log, and waits for /health 200. On failure prints
# the log's tail and returns 1 (the server, if still running, is stopped).
lg_start_server() {
  local bin="$1" work="$2"
  shift 2
  LG_SERVER_LOG="$work/serve.log"
  LG_SERVER_PORT=""
  mkdir -p "$work/state"
  local port_file="" port_args=()
  # --port 0 + --port-file avoids any race for the port; older builds lack --port-file.
  if "$bin" serve --help 2>/dev/null | grep -q -- '--port-file'; then
    port_file="$work/port"
    rm -f "$port_file"
    port_args=(--port 0 --port-file "$port_file")
  else
    LG_SERVER_PORT="$(lg_free_port)"
    port_args=(--port "$LG_SERVER_PORT")
  fi
  "$bin" serve --host 127.0.0.1 "${port_args[@]}" --state-dir "$work/state" "$@" >"$LG_SERVER_LOG" 2>&1 &
  LG_SERVER_PID=$!
  local deadline=$(( SECONDS + LG_HEALTH_TIMEOUT ))
  while :; do
    if ! kill -0 "$LG_SERVER_PID" 2>/dev/null; then
      wait "$LG_SERVER_PID" 2>/dev/null && LG_SERVER_STATUS=0 || LG_SERVER_STATUS=$?
      echo "rwkv-edge serve exited (status $LG_SERVER_STATUS) before it was ready; its log:" >&2
      tail -n 30 "$LG_SERVER_LOG" >&2
      LG_SERVER_PID=""
      return 1
    fi
    if [ -n "$port_file" ] && [ -s "$port_file" ]; then
      LG_SERVER_PORT="$(tr -d '[:space:]' <"$port_file")"
    fi
    if [ -n "$LG_SERVER_PORT" ] && "$bin" loadgen --health "http://127.0.0.1:$LG_SERVER_PORT/health" \
        --health-timeout 2 >/dev/null 2>"$work/health.err"; then
      break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "rwkv-edge serve was not ready (/health 200) within ${LG_HEALTH_TIMEOUT}s (set LG_HEALTH_TIMEOUT to wait longer)" >&2
      [ -s "$work/health.err" ] && echo "last /health answer: $(cat "$work/health.err")" >&2
      echo "its log:" >&2
      tail -n 30 "$LG_SERVER_LOG" >&2
      lg_stop_server
      return 1
    fi
    sleep 0.2
  done
  LG_SERVER_URL="http://127.0.0.1:$LG_SERVER_PORT"
}

# lg_stop_server: SIGTERM (the server drains), SIGKILL after 30 s. Sets LG_SERVER_STATUS to the
# server's exit status (143 = killed by SIGTERM without handling it, 137 = SIGKILL).
lg_stop_server() {
  [ -n "$LG_SERVER_PID" ] || return 0
  local pid="$LG_SERVER_PID"
  LG_SERVER_PID=""
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "rwkv-edge serve did not stop within 30 s of SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null && LG_SERVER_STATUS=0 || LG_SERVER_STATUS=$?
}

# lg_rss_kb PID: the resident set size in KiB from /proc/PID/status, or empty when gone.
lg_rss_kb() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

# lg_json_field FILE KEY: a top-level scalar of a one-line JSON report written by
# `rwkv-edge loadgen --json-file` (keys there are unique; no jq needed).
lg_json_field() {
  sed -n "s/.*\"$2\":\\([^,}]*\\).*/\\1/p" "$1" | head -n 1 | tr -d '"'
}
