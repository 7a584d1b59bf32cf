#!/usr/bin/env bash
# The quick-start demo: installs what it needs, builds natctl, then publishes ports inside a
# sandbox of network namespaces and shows traffic flowing. Run as root: sudo ./scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/demo/main.js
