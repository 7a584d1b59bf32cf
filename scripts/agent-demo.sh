#!/usr/bin/env bash
# The node-agent demo: installs what it needs, builds natctl, then runs `natctl watch` on a
# drop-in directory inside a sandbox of network namespaces: a fragment is added and serves,
# /healthz and /metrics are shown, the fragment is removed, the agent stops and its rules stay.
# Everything is removed at the end, also on Ctrl-C. Run as root: sudo ./scripts/agent-demo.sh
# (NATCTL_SKIP_SETUP=1 skips the install and build, for an already built tree.)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NATCTL_SKIP_SETUP:-0}" != 1 ]; then bash scripts/setup.sh; fi
exec node dist/demo/agent.js
