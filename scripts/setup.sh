#!/usr/bin/env bash
# Installs everything natctl, its tests and its demo need on a fresh Debian 12 / Ubuntu 24.04
# host, then builds natctl. Run as root from the repository. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs system packages): sudo $0" >&2
  exit 3
fi

export DEBIAN_FRONTEND=noninteractive
packages=(nftables iptables iproute2 conntrack curl procps kmod ca-certificates)
# The in-process nftables addon (native/): libnftables' headers and a C++ toolchain for node-gyp.
packages+=(libnftables-dev g++ make python3)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
node_minor=$(node -p 'process.versions.node.split(".")[1]')
if [ "$node_major" -lt 18 ] || { [ "$node_major" -eq 18 ] && [ "$node_minor" -lt 19 ]; }; then
  echo "setup: natctl needs Node.js >= 18.19 (found $(node --version))" >&2
  exit 3
fi

# natctl's kernel features; modules are built in on some kernels, so a failed modprobe is not fatal.
for m in nf_tables nft_nat nft_fib_inet nft_ct nft_masq nft_numgen br_netfilter; do modprobe -q "$m" 2>/dev/null || true; done

# npm ci builds the addon (package.json "install"); a failed build falls back to spawning nft.
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
echo "setup: done ($(nft --version), node $(node --version), $(node -e 'import("./dist/backends/nft/transport.js").then((m) => console.log(m.describeNftTransport()))'))"
