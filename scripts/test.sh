#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests on the real kernel, in network
# namespaces the tests create and delete. Needs root: run it as root, or as a user with sudo
# (it runs itself again through sudo).
set -euo pipefail
# shellcheck source=scripts/as-root.sh
source "$(dirname "$0")/as-root.sh"
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx vitest run
