#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests on the real kernel, in network
# namespaces the tests create and delete. Run as root: sudo ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx vitest run
