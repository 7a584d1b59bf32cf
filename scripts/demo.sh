#!/usr/bin/env bash
# The quick-start demo: installs what it needs, builds natctl, then publishes ports inside a
# sandbox of network namespaces and shows traffic flowing. Needs root: run it as root, or as a
# user with sudo (it runs itself again through sudo).
set -euo pipefail
# shellcheck source=scripts/as-root.sh
source "$(dirname "$0")/as-root.sh"
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/demo/main.js
