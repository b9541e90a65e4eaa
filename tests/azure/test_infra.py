"""infra/bicep without a Bicep compiler: parsed, wired, scanned, and kept in step with the app.

- every ``.bicep`` file parses with pycep-parser;
- modules exist and get exactly the parameters they declare (what ``bicep build`` checks);
- checkov (in its own virtual environment, ``.ci/checkov-venv``) finds no failed check and
  no parsing error, and every skip carries its reason inline;
- contract: the app settings the Bicep sets are the settings ``functions_azure`` reads,
  and the function names and routes the docs and the client use are the app's.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from functions_azure import settings as app
from rustyflower.adapters.azure import durable_client
from rustyflower.adapters.azure import services as azure_services
from rustyflower.core.snapshot import keys as snapshot_keys
from tests.azure.azurite import REPO
from tests.tooling import assert_checkov_passes, justified_checkov_skips

BICEP = REPO / "infra" / "bicep"
APP = REPO / "functions_azure"
DOCS = (BICEP / "README.md", REPO / "docs" / "azure-deploy.md")
BICEP_FILES = sorted(BICEP.rglob("*.bicep"))


def parse(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


def app_settings(bicep: dict[str, Any]) -> dict[str, Any]:
    """name -> value of every app setting listed in the Function App module's variables."""
    settings: dict[str, Any] = {}
    for variable in bicep["variables"].values():
        value = variable.get("value")
        if isinstance(value, list) and all(
            isinstance(item, dict) and set(item) == {"name", "value"} for item in value
        ):
            settings.update({item["name"]: item["value"] for item in value})
    return settings


FUNCTION_APP = parse(BICEP / "modules" / "functionapp.bicep")
SETTINGS = app_settings(FUNCTION_APP)


# --- parsing and wiring -------------------------------------------------------------------


def test_there_is_a_main_template_and_modules() -> None:
    names = {path.relative_to(BICEP).as_posix() for path in BICEP_FILES}
    assert {"main.bicep", "modules/functionapp.bicep", "modules/storage.bicep"} <= names
    assert {"modules/keyvault.bicep", "modules/monitoring.bicep", "modules/redis.bicep"} <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(BICEP).as_posix())
def test_every_bicep_file_parses(path: Path) -> None:
    document = parse(path)
    assert document.get("resources") or document.get("modules"), f"{path} declares nothing"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(BICEP).as_posix())
def test_modules_get_exactly_the_parameters_they_declare(path: Path) -> None:
    for name, module in parse(path).get("modules", {}).items():
        target = (path.parent / module["detail"]["path"]).resolve()
        assert target.is_file(), f"module {name}: {target} is missing"
        declared = parse(target).get("parameters", {})
        config = module["config"]
        config = config.get("config", config) if "condition" in config else config
        given = set(config["params"])
        unknown = given - set(declared)
        assert not unknown, f"module {name} passes undeclared parameters {sorted(unknown)}"
        required = {key for key, param in declared.items() if param.get("default") is None}
        missing = required - given
        assert not missing, f"module {name} leaves required parameters {sorted(missing)} unset"


def test_parameters_file_names_main_parameters_and_no_secret() -> None:
    main = parse(BICEP / "main.bicep")["parameters"]
    document = json.loads((BICEP / "main.parameters.json").read_text())
    given = set(document["parameters"])
    assert given <= set(main), sorted(given - set(main))
    secure = {
        name
        for name, param in main.items()
        if any(d["type"] == "secure" for d in param["decorators"])
    }
    assert secure == {"signingKeys", "encryptionKeys"}
    assert not given & secure, "secrets are passed by deploy.sh, never kept in a file"
    required = {name for name, param in main.items() if param.get("default") is None}
    assert required - given == {"signingKeys"}


def test_outputs_are_documented() -> None:
    outputs = set(parse(BICEP / "main.bicep")["outputs"])
    assert {
        "functionAppName",
        "functionAppHostName",
        "storageAccountName",
        "keyVaultUri",
        "appInsightsConnectionStringSetting",
    } <= outputs
    readme = (BICEP / "README.md").read_text()
    undocumented = {name for name in outputs if f"`{name}`" not in readme}
    assert not undocumented, f"outputs missing from infra/bicep/README.md: {sorted(undocumented)}"
    parameters = set(parse(BICEP / "main.bicep")["parameters"])
    undocumented = {name for name in parameters if f"`{name}`" not in readme}
    assert not undocumented, f"parameters missing from README.md: {sorted(undocumented)}"


def test_security_settings_of_the_resources() -> None:
    storage = parse(BICEP / "modules" / "storage.bicep")["resources"]["storage"]["config"]
    props = storage["properties"]
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["allowSharedKeyAccess"] is False

    vault = parse(BICEP / "modules" / "keyvault.bicep")["resources"]["vault"]["config"]
    assert vault["properties"]["enableRbacAuthorization"] is True
    assert vault["properties"]["enableSoftDelete"] is True
    assert vault["properties"]["enablePurgeProtection"] is True

    redis = parse(BICEP / "modules" / "redis.bicep")["resources"]["redis"]["config"]
    assert redis["properties"]["enableNonSslPort"] is False
    assert redis["properties"]["minimumTlsVersion"] == "1.2"
    main = parse(BICEP / "main.bicep")
    assert main["parameters"]["deployRedis"]["default"] is False
    assert main["modules"]["redis"]["config"]["condition"] == "deployRedis"

    site = FUNCTION_APP["resources"]["site"]["config"]
    assert site["properties"]["httpsOnly"] is True
    assert site["properties"]["siteConfig"]["minTlsVersion"] == "1.2"
    assert site["properties"]["siteConfig"]["ftpsState"] == "Disabled"
    assert site["identity"]["type"] == "UserAssigned"


def test_the_app_identity_gets_the_data_roles() -> None:
    text = (BICEP / "modules" / "roles.bicep").read_text()
    for role in (
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",  # Storage Queue Data Contributor
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",  # Storage Table Data Contributor
        "4633458b-17de-408a-b874-0445c86b69e6",  # Key Vault Secrets User
        "3913510d-42f4-4e42-8a64-420c390055eb",  # Monitoring Metrics Publisher
    ):
        assert role in text
    main = parse(BICEP / "main.bicep")["modules"]
    assert main["functionApp"]["config"]["dependsOn"] == ["roles"]


def test_the_lifeboat_container_and_the_sites_least_privilege() -> None:
    storage = parse(BICEP / "modules" / "storage.bicep")["resources"]
    container = storage["lifeboatContainer"]["config"]
    assert container["parent"] == "blobService"
    assert container["properties"]["publicAccess"] == "None"
    lifeboat = parse(BICEP / "modules" / "lifeboat.bicep")
    access = lifeboat["resources"]["siteAccess"]["config"]
    assert access["scope"] == "lifeboatContainer"  # the container, not the account
    text = (BICEP / "modules" / "lifeboat.bicep").read_text()
    assert "ba92f5b4-2d11-453d-a403-e96b0029c9fe" in text  # Storage Blob Data Contributor
    assert "b7e6dc6d" not in text  # never Owner for the site
    main = parse(BICEP / "main.bicep")
    condition = main["modules"]["lifeboat"]["config"]["condition"]["operator"]
    assert condition["type"] == "not"
    tested = condition["operands"]["bool_value"]["function"]
    assert (tested["type"], tested["parameters"]) == ("empty", {"item_to_test": "sitePrincipalId"})
    assert main["parameters"]["sitePrincipalId"]["default"] == ""
    assert SETTINGS["RUSTYFLOWER_REPLICA_CONTAINER"] == "lifeboatContainerName"


def test_the_watchdog_timer_reads_its_schedule_from_the_bicep() -> None:
    text = (APP / "function_app.py").read_text()
    assert 'schedule=f"%{ENV_WATCHDOG_SCHEDULE}%"' in text
    assert SETTINGS[app.ENV_WATCHDOG_SCHEDULE] == "watchdogSchedule"
    params = FUNCTION_APP["parameters"]
    assert params["watchdogSchedule"]["default"] == app.DEFAULT_WATCHDOG_SCHEDULE
    assert params["takeoverAfterSeconds"]["default"] == app.DEFAULT_TAKEOVER_AFTER
    assert SETTINGS[app.ENV_SITE_ID] == "siteId"
    assert params["siteId"]["default"] == ""  # no site named: the watchdog takes nothing over


# --- checkov ------------------------------------------------------------------------------


def test_every_checkov_skip_is_justified_inline() -> None:
    assert justified_checkov_skips(BICEP_FILES, "// ") > 0


@pytest.mark.slow
def test_checkov_finds_no_failed_check_and_no_parsing_error() -> None:
    assert_checkov_passes(REPO / "infra" / "bicep", "bicep")


# --- contract with functions_azure --------------------------------------------------------

SETTING_NAME = re.compile(r"\bRUSTYFLOWER_[A-Z0-9_]*[A-Z0-9]\b")


def settings_the_app_reads() -> set[str]:
    """Every RUSTYFLOWER_* name in functions_azure's code and host.json, the key settings
    core reads for it (``SnapshotKeys.from_env``) and the service tasks' settings
    (``AzureServiceSettings.from_env``, adapters/azure/services.py)."""
    found: set[str] = set()
    for path in sorted(APP.glob("*.py")):
        found |= set(SETTING_NAME.findall(path.read_text()))
    host = (APP / "host.json").read_text()
    found |= set(re.findall(r"%(\w+)%", host))
    code = "\n".join(path.read_text() for path in APP.glob("*.py"))
    if "AzureServiceSettings.from_env" in code:  # the service tasks' settings
        found |= set(azure_services.SETTINGS)
    if "SnapshotKeys.from_env" in code:
        found |= {
            snapshot_keys.ENV_SIGNING_KEYS,
            snapshot_keys.ENV_ENCRYPTION_KEYS,
            snapshot_keys.ENV_REQUIRE_SIGNATURE,
        }
    return found


def test_the_bicep_sets_exactly_the_settings_functions_azure_reads() -> None:
    read = settings_the_app_reads()
    assert set(app.APP_SETTINGS) <= read
    assert read <= set(app.APP_SETTINGS), "settings.APP_SETTINGS misses names the code uses"
    rustyflower_in_bicep = {name for name in SETTINGS if name.startswith("RUSTYFLOWER_")}
    assert rustyflower_in_bicep == {name for name in read if name.startswith("RUSTYFLOWER_")}
    host_refs = set(re.findall(r"%(\w+)%", (APP / "host.json").read_text()))
    assert host_refs <= set(SETTINGS), "host.json reads a setting the Bicep does not set"


def test_the_storage_connection_is_identity_based() -> None:
    connection = app.ENV_STORAGE
    assert connection not in SETTINGS, "no connection string: shared keys are disabled"
    for suffix in ("blobServiceUri", "queueServiceUri", "tableServiceUri", "credential"):
        assert f"{connection}__{suffix}" in SETTINGS
    assert SETTINGS[f"{connection}__credential"] == "managedidentity"
    # the checkpoint sink's DefaultAzureCredential picks the user-assigned identity
    assert SETTINGS["RUSTYFLOWER_SNAPSHOT_ACCOUNT_URL"] == "blobEndpoint"
    assert SETTINGS["AZURE_CLIENT_ID"] == SETTINGS[f"{connection}__clientId"] == "identityClientId"
    assert "azure-identity" in (APP / "requirements.txt").read_text()


def test_secrets_come_from_key_vault_references() -> None:
    assert SETTINGS["RUSTYFLOWER_SIGNING_KEYS"] == (
        "@Microsoft.KeyVault(SecretUri=${signingKeysSecretUri})"
    )
    encryption = SETTINGS["RUSTYFLOWER_ENCRYPTION_KEYS"]["operator"]["operands"]
    assert encryption["false_value"] == "@Microsoft.KeyVault(SecretUri=${encryptionKeysSecretUri})"
    assert SETTINGS["RUSTYFLOWER_REQUIRE_SIGNATURE"] == "true"
    site = FUNCTION_APP["resources"]["site"]["config"]["properties"]
    assert site["keyVaultReferenceIdentity"] == "identityId"


def test_the_local_settings_example_names_the_same_settings() -> None:
    example = json.loads((APP / "local.settings.json.example").read_text())["Values"]
    local = {name for name in example if name.startswith("RUSTYFLOWER_")}
    assert local == {name for name in SETTINGS if name.startswith("RUSTYFLOWER_")}


INDEX_FUNCTIONS = """
import json
from functions_azure import function_app
found = []
for function in function_app.app.get_functions():
    trigger = function.get_trigger()
    methods = [str(getattr(m, "value", m)) for m in (getattr(trigger, "methods", None) or ())]
    found.append([function.get_function_name(), getattr(trigger, "route", None), methods])
print(json.dumps(found))
"""


@functools.cache
def functions_and_routes() -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """What the Functions host indexes from function_app.py: function names, and the
    (method, route) of its HTTP triggers, read from the app object itself.

    In a fresh interpreter: ``get_functions()`` builds the functions, and building them
    twice in one process fails, which would break the orchestrator tests' own use of it.
    """
    result = subprocess.run(
        [sys.executable, "-c", INDEX_FUNCTIONS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names: set[str] = set()
    routes: set[tuple[str, str]] = set()
    for name, route, methods in json.loads(result.stdout.strip().splitlines()[-1]):
        names.add(name)
        routes |= {(method, route) for method in methods if route is not None}
    return frozenset(names), frozenset(routes)


def test_function_names_are_the_ones_docs_and_settings_use() -> None:
    names, _ = functions_and_routes()
    assert names == set(app.FUNCTION_NAMES)
    assert {"rustyflower_orchestrator", "rustyflower_activity", "rustyflower_checkpoint"} <= names
    for doc in DOCS:
        mentioned = set(re.findall(r"\brustyflower_[a-z_]+\b", doc.read_text()))
        assert mentioned, f"{doc} names no function"
        assert mentioned <= names, f"{doc} names functions the app lacks: {mentioned - names}"


def test_routes_are_the_ones_the_client_calls() -> None:
    _, routes = functions_and_routes()
    assert routes == {
        ("POST", "instances"),
        ("GET", "instances/{instance_id}"),
        ("POST", "instances/{instance_id}/events/{event_name}"),
        ("POST", "instances/{instance_id}/terminate"),
    }
    host = json.loads((APP / "host.json").read_text())
    prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    assert f"/{prefix}/instances" == durable_client.APP_PATH
    assert durable_client.MANAGEMENT_PATH == "/runtime/webhooks/durabletask/instances"


# --- deploy.sh ----------------------------------------------------------------------------


def test_deploy_script_is_valid_shell() -> None:
    script = BICEP / "deploy.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "az deployment group create" in text
    assert "func azure functionapp publish" in text
    if shutil.which("shellcheck"):
        result = subprocess.run(
            ["shellcheck", str(script), str(REPO / ".ci" / "azurite.sh")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout
