#!/usr/bin/env bash
# Test tools that live outside the project's virtual environment, installed project-locally:
# Azurite (npm) for the Azure Storage tests, checkov in a venv of its own (its pinned
# dependencies clash with the test environment). Each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/azurite.sh

CHECKOV=.ci/checkov-venv/bin/checkov
if [ ! -x "$CHECKOV" ]; then
  echo "installing checkov into .ci/checkov-venv"
  python3 -m venv .ci/checkov-venv
  .ci/checkov-venv/bin/python -m pip install --quiet --upgrade pip
  .ci/checkov-venv/bin/python -m pip install --quiet 'checkov==3.3.30'
fi
echo "checkov $("$CHECKOV" --version) in .ci/checkov-venv"
