# Sourced by the scripts: installs the Debian packages the build needs when they are missing.
# Shared by scripts/test, scripts/serve and docker/Dockerfile so the lists cannot drift apart.

RWKV_EDGE_BUILD_PACKAGES="g++ cmake make pkg-config nlohmann-json3-dev libspdlog-dev libfmt-dev doctest-dev \
libcpp-httplib-dev libasio-dev libeigen3-dev libicu-dev"

# ensure_packages PKG...: installs the missing ones with apt-get when root, else explains.
ensure_packages() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
      apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${missing[@]}"
    }
  else
    echo "missing packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
}

# build_release BUILD_DIR [TARGET]: configures (Release) and builds TARGET (default: all).
build_release() {
  local dir="$1"
  local target="${2:-all}"
  cmake -S "$RWKV_EDGE_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$dir" --target "$target" -j"$(nproc)"
}
