#!/usr/bin/env bash
# The one step that needs a real Azure subscription: deploy infra/bicep/main.bicep into a
# resource group, then publish functions_azure/ to the Function App it created.
#
# Prerequisites (see docs/azure-deploy.md):
#   - Azure CLI (az) >= 2.61, logged in: `az login`, `az account set -s <subscription>`;
#     it compiles the Bicep itself (`az bicep install` once if asked).
#   - Azure Functions Core Tools v4 (`func`) >= 4.0.6000 (publishes to Flex Consumption
#     with Entra ID: basic-auth publishing is disabled on the app).
#   - Python 3.11 and this repository (the app package is assembled from it).
#   - On the resource group: Contributor, plus Owner or Role Based Access Control
#     Administrator (the template assigns data roles to the app's identity).
#
# Usage:
#   export RUSTYFLOWER_SIGNING_KEYS=...     # the on-premises keys (rustyflower keygen)
#   infra/bicep/deploy.sh <resource-group> [<location>]
#
# Optional environment:
#   RUSTYFLOWER_ENCRYPTION_KEYS  data keys, when the on-premises site encrypts snapshots
#   PARAMETERS                   parameters file (default infra/bicep/main.parameters.json)
#   APP_PACKAGES                 extra packages to ship, space separated, relative to the
#                                repository (your activities module: e.g. "myapp")
#   WHAT_IF=1                    only show what the deployment would change
#   SKIP_PUBLISH=1               deploy the infrastructure only
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e 's/^# \{0,1\}//' -e '/^set -euo/d'
  exit 2
}

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  usage
fi
RESOURCE_GROUP=$1
LOCATION=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PARAMETERS=${PARAMETERS:-$HERE/main.parameters.json}

fail() {
  echo "deploy.sh: $*" >&2
  exit 1
}

command -v az >/dev/null || fail "the Azure CLI (az) is not installed: https://learn.microsoft.com/cli/azure/install-azure-cli"
if [ -z "${SKIP_PUBLISH:-}" ] && [ -z "${WHAT_IF:-}" ]; then
  command -v func >/dev/null || fail "Azure Functions Core Tools (func) v4 is not installed (or set SKIP_PUBLISH=1)"
fi
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || fail "$PYTHON is not installed"
[ -n "${RUSTYFLOWER_SIGNING_KEYS:-}" ] || fail "set RUSTYFLOWER_SIGNING_KEYS to the keys the on-premises site signs snapshots with"
[ -f "$PARAMETERS" ] || fail "no parameters file $PARAMETERS"
az account show --query id -o tsv >/dev/null 2>&1 || fail "not logged in: run az login (and az account set -s <subscription>)"

if ! az group show -n "$RESOURCE_GROUP" -o none 2>/dev/null; then
  [ -n "$LOCATION" ] || fail "resource group $RESOURCE_GROUP does not exist: pass a location to create it"
  echo "creating resource group $RESOURCE_GROUP in $LOCATION"
  az group create -n "$RESOURCE_GROUP" -l "$LOCATION" -o none
fi

# The keys go to the deployment in a file only this user can read, never on a command line.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
chmod 700 "$WORK"
SECRETS="$WORK/secrets.parameters.json"
(
  umask 077
  "$PYTHON" - "$SECRETS" <<'PY'
import json, os, sys
parameters = {"signingKeys": {"value": os.environ["RUSTYFLOWER_SIGNING_KEYS"]}}
if os.environ.get("RUSTYFLOWER_ENCRYPTION_KEYS"):
    parameters["encryptionKeys"] = {"value": os.environ["RUSTYFLOWER_ENCRYPTION_KEYS"]}
document = {
    "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
    "contentVersion": "1.0.0.0",
    "parameters": parameters,
}
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(document, out)
PY
)

DEPLOYMENT="rustyflower-$(date -u +%Y%m%d%H%M%S)"
if [ -n "${WHAT_IF:-}" ]; then
  az deployment group what-if -g "$RESOURCE_GROUP" -n "$DEPLOYMENT" \
    -f "$HERE/main.bicep" -p "@$PARAMETERS" -p "@$SECRETS"
  exit 0
fi

echo "deploying $HERE/main.bicep to $RESOURCE_GROUP (deployment $DEPLOYMENT)"
az deployment group create -g "$RESOURCE_GROUP" -n "$DEPLOYMENT" \
  -f "$HERE/main.bicep" -p "@$PARAMETERS" -p "@$SECRETS" -o none

output() {
  az deployment group show -g "$RESOURCE_GROUP" -n "$DEPLOYMENT" \
    --query "properties.outputs.$1.value" -o tsv
}
APP=$(output functionAppName)
URL=$(output functionAppUrl)

if [ -z "${SKIP_PUBLISH:-}" ]; then
  BUILD="$WORK/app"
  EXTRA=()
  for package in ${APP_PACKAGES:-}; do
    EXTRA+=(--with "$package")
  done
  (cd "$REPO" && "$PYTHON" -m functions_azure.build "$BUILD" "${EXTRA[@]}")
  echo "publishing the Function App $APP"
  (cd "$BUILD" && func azure functionapp publish "$APP" --python)
fi

cat <<EOF

RustyFlower is deployed.
  Function App:   $APP  ($URL)
  Storage:        $(output storageAccountName)  container $(output snapshotContainerName)
  Key Vault:      $(output keyVaultUri)
  Task hub:       $(output taskHubName)

Keys for the on-premises site (keep them secret):
  az functionapp keys list -g $RESOURCE_GROUP -n $APP --query functionKeys.default -o tsv
  az functionapp keys list -g $RESOURCE_GROUP -n $APP --query systemKeys.durabletask_extension -o tsv

Rehearse a failover: docs/azure-deploy.md, "Running a failover".
EOF
