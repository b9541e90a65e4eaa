#!/usr/bin/env bash
# Install Azurite, the Azure Storage emulator the Azure tests start (tests/azure/azurite.py),
# project-locally into .ci/node. Does nothing when it is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.ci/node/node_modules/.bin/azurite-blob
if [ -x "$BIN" ]; then
  echo "azurite $("$BIN" --version) already in .ci/node"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "azurite.sh: npm (Node.js 18+) is needed to install Azurite" >&2; exit 1; }
mkdir -p .ci/node
npm install --prefix .ci/node --no-audit --no-fund --loglevel=error azurite@3
echo "azurite $("$BIN" --version) installed in .ci/node"
