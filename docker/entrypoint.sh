#!/bin/sh
# Container entrypoint: runs the command (default `rwkv-edge serve ...`). For `rwkv-edge serve`,
# an API key from the environment is passed as --api-key-file, never on the command line
# (which every process in the container could read):
#   RWKV_EDGE_API_KEY       one key (or several, one per line)
#   RWKV_EDGE_API_KEY_FILE  a file with keys, one per line (e.g. a Docker/Compose secret)
set -eu

if [ "${1:-}" = "rwkv-edge" ] && [ "${2:-}" = "serve" ]; then
  if [ -n "${RWKV_EDGE_API_KEY_FILE:-}" ]; then
    set -- "$@" --api-key-file "$RWKV_EDGE_API_KEY_FILE"
  elif [ -n "${RWKV_EDGE_API_KEY:-}" ]; then
    umask 077
    keyfile="$(mktemp)"
    printf '%s\n' "$RWKV_EDGE_API_KEY" >"$keyfile"
    set -- "$@" --api-key-file "$keyfile"
  fi
  unset RWKV_EDGE_API_KEY
fi
exec "$@"
