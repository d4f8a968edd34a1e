#!/usr/bin/env bash
# Starts `rwkv-edge serve` (the binary given) on a free loopback port with the model given, waits
# for /health 200, checks it with the official openai npm client (run.mjs), stops the server.
#
#   tests/openai_client/run_against_server.sh build/rwkv-edge MODEL [serve options...]
#
# The server gets a random API key (so authentication is exercised too) unless --no-key comes
# first. Installs the pinned client with `npm ci` when node_modules is missing.
# Exit status: 0 all checks passed, 1 a check or the server failed, 2 bad usage, 77 skipped
# (node/npm missing or older than Node 18).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RWKV_EDGE_ROOT="$(cd "$here/../.." && pwd)"
# shellcheck source=tools/loadgen/serve_helpers.sh
. "$RWKV_EDGE_ROOT/tools/loadgen/serve_helpers.sh"

use_key=1
if [ "${1:-}" = "--no-key" ]; then
  use_key=0
  shift
fi
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] || [ $# -lt 2 ]; then
  echo "usage: $0 [--no-key] RWKV_EDGE_BINARY MODEL [serve options...]"
  [ $# -ge 1 ] && [ "$1" != "-h" ] && [ "$1" != "--help" ] && exit 2
  [ $# -eq 0 ] && exit 2
  exit 0
fi
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
model="$2"
shift 2
[ -x "$bin" ] || { echo "$bin is not an executable" >&2; exit 1; }
[ -f "$model" ] || { echo "$model: no such model file" >&2; exit 1; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIP: node and npm are needed for the openai client check" >&2
  exit 77
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
  echo "SKIP: Node $node_major is too old for the openai client (needs 18+)" >&2
  exit 77
fi

if [ ! -d "$here/node_modules/openai" ]; then
  echo "installing the openai client (npm ci) ..." >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/rwkv-edge-openai.XXXXXX")"
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  lg_stop_server
  rm -rf "$work"
}
trap cleanup EXIT

key_args=()
key=""
if [ "$use_key" = 1 ]; then
  key="test-$RANDOM$RANDOM$RANDOM"
  printf '%s\n' "$key" >"$work/keys"
  key_args=(--api-key-file "$work/keys")
fi
lg_start_server "$bin" "$work" --model "$model" "${key_args[@]}" "$@"
echo "server: $LG_SERVER_URL" >&2

status=0
RWKV_EDGE_API_KEY="$key" node "$here/run.mjs" "$LG_SERVER_URL" || status=$?
lg_stop_server
if [ "$LG_SERVER_STATUS" != 0 ]; then
  echo "rwkv-edge serve exited with status $LG_SERVER_STATUS on SIGTERM; its log:" >&2
  tail -n 20 "$LG_SERVER_LOG" >&2
  status=1
fi
exit "$status"
