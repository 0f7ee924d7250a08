#!/usr/bin/env bash
# Installs the Debian packages eddy needs to build, test and run, if any is missing.
# Works as root or through sudo; does nothing when everything is there.
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang libclang-rt-14-dev clang-format valgrind
  libjansson-dev libuv1-dev liblua5.4-dev
  libmosquitto-dev mosquitto mosquitto-clients openssl
  liblmdb-dev libwebsockets-dev libssl-dev libcrypt-dev curl jq
  chromium
)
# The browser editor is assembled with Node.js and npm (scripts/build-web.sh) and tested with
# playwright-core driving chromium: Debian's nodejs and npm unless a node of 18 or newer is there.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 18 ] || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
