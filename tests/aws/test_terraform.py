"""infra/terraform/aws without a terraform binary: parsed, scanned, and kept in step with the code.

- every ``.tf`` file parses with python-hcl2;
- checkov (in its own virtual environment, ``.ci/checkov-venv``) finds no failed check and
  no parsing error, and every skip carries its reason inline;
- contract: the handlers, the environment of each function and the table keys in the
  Terraform are the ones lambda_aws uses; the ASL placeholders are the exporter's;
- the security settings and the least-privilege IAM the deployment promises.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest

from lambda_aws import settings as names
from lambda_aws.asl import compile_for_terraform
from rustyflower.adapters.aws import deployment
from rustyflower.adapters.aws.compiler import RESUME_FORMAT
from tests.conformance.corpus import load_cases
from tests.tooling import assert_checkov_passes, justified_checkov_skips

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "infra" / "terraform" / "aws"
TF_FILES = sorted(TERRAFORM.glob("*.tf"))
README = TERRAFORM / "README.md"


# --- parsing ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """python-hcl2 8 keeps quotes around strings and keys: take them off, drop markers."""
    if isinstance(value, dict):
        return {
            _plain(key): _plain(item)
            for key, item in value.items()
            if key not in ("__is_block__", "__comments__")
        }
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value[1:-1]
    return value


@functools.cache
def parsed(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return _plain(hcl2.load(handle))  # type: ignore[no-any-return]


def blocks(kind: str) -> dict[str, dict[str, Any]]:
    """Every ``resource``/``data`` block of the module: ``"type.name"`` -> body."""
    found: dict[str, dict[str, Any]] = {}
    for path in TF_FILES:
        for entry in parsed(path).get(kind, []):
            for type_name, named in entry.items():
                for name, body in named.items():
                    found[f"{type_name}.{name}"] = body
    return found


def resource(address: str) -> dict[str, Any]:
    return blocks("resource")[address]


def data(address: str) -> dict[str, Any]:
    return blocks("data")[address]


def module_locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in TF_FILES:
        for entry in parsed(path).get("locals", []):
            merged.update(entry)
    return merged


def variables() -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for entry in parsed(TERRAFORM / "variables.tf")["variable"]:
        merged.update(entry)
    return merged


def outputs() -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for entry in parsed(TERRAFORM / "outputs.tf")["output"]:
        merged.update(entry)
    return merged


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.name)
def test_every_tf_file_parses(path: Path) -> None:
    document = parsed(path)
    assert document, f"{path.name} declares nothing"


def test_the_module_has_its_files() -> None:
    assert {p.name for p in TF_FILES} >= {
        "main.tf",
        "variables.tf",
        "outputs.tf",
        "versions.tf",
        "stepfunctions.tf",
        "scheduler.tf",
        "operator.tf",
        "lifeboat.tf",
    }


# --- contract with lambda_aws ----------------------------------------------------------------


def functions() -> dict[str, dict[str, Any]]:
    return dict(module_locals()["functions"])


def test_handlers_are_the_modules_functions() -> None:
    handlers = {key: body["handler"] for key, body in functions().items()}
    assert handlers == names.HANDLERS
    for path in handlers.values():
        module, _, attribute = path.rpartition(".")
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), path
        assert re.search(
            rf"^def {attribute}\(", (REPO / (module.replace(".", "/") + ".py")).read_text(), re.M
        )


def test_each_function_gets_exactly_the_settings_it_reads() -> None:
    for key, body in functions().items():
        assert set(body["environment"]) == set(names.FUNCTION_ENV[key]), key
    lambdas = resource("aws_lambda_function.functions")
    assert "local.powertools" in lambdas["environment"][0]["variables"]
    powertools = module_locals()["powertools"]
    assert powertools["POWERTOOLS_SERVICE_NAME"] == names.SERVICE
    assert powertools["POWERTOOLS_METRICS_NAMESPACE"] == names.METRICS_NAMESPACE


SETTING_NAME = re.compile(r"\bRUSTYFLOWER_[A-Z0-9_]*[A-Z0-9]\b")


def test_function_env_names_every_setting_the_code_reads() -> None:
    # the functions run lambda_aws and the AWS adapter (which names the shared settings)
    shipped = [*(REPO / "lambda_aws").glob("*.py"), *(REPO / "adapters" / "aws").glob("*.py")]
    code = "\n".join(p.read_text() for p in shipped)
    read = set(SETTING_NAME.findall(code))
    declared = {name for group in names.FUNCTION_ENV.values() for name in group}
    # the key settings may also come from the secret; the rest must be declared
    assert read - declared <= {names.ENV_SIGNING_KEYS, names.ENV_ENCRYPTION_KEYS}
    assert declared <= read


def test_table_keys_and_ttl_are_the_codes() -> None:
    idempotency = resource("aws_dynamodb_table.idempotency")
    assert idempotency["hash_key"] == names.IDEMPOTENCY_KEY_ATTRIBUTE
    assert "range_key" not in idempotency
    assert idempotency["ttl"][0] == {
        "attribute_name": names.IDEMPOTENCY_TTL_ATTRIBUTE,
        "enabled": True,
    }
    tokens = resource("aws_dynamodb_table.tokens")
    assert (tokens["hash_key"], tokens["range_key"]) == (
        deployment.TOKENS_PARTITION_KEY,
        deployment.TOKENS_SORT_KEY,
    )
    assert tokens["ttl"][0] == {"attribute_name": deployment.TOKENS_TTL_ATTRIBUTE, "enabled": True}
    for table in (idempotency, tokens):
        assert table["billing_mode"] == "PAY_PER_REQUEST"
        assert table["point_in_time_recovery"][0]["enabled"] is True
        assert table["server_side_encryption"][0]["enabled"] is True
        assert table["server_side_encryption"][0]["kms_key_arn"] == "${aws_kms_key.main.arn}"
        assert table["deletion_protection_enabled"] is True
        declared = {a["name"] for a in table["attribute"]}
        assert declared == {table["hash_key"], table.get("range_key", table["hash_key"])}


def _terraform_machine_name(key: str) -> str:
    """The HCL expression of local.machine_names, in Python."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", key.replace("@", "-v"))


def test_machine_names_are_derived_as_the_continue_function_derives_them() -> None:
    expression = module_locals()["machine_names"]
    assert 'replace(replace(key, "@", "-v"), "/[^A-Za-z0-9_-]/", "-")' in expression
    for flow, version in [("order", "1.2"), ("a_b-c", "2024.01 rc"), ("x", "v2")]:
        assert _terraform_machine_name(f"{flow}@{version}") == deployment.state_machine_name(
            flow, version
        )
    prefix = module_locals()["state_machine_arn_prefix"]
    assert prefix.endswith(":stateMachine:${var.name_prefix}-")


def test_the_asl_placeholders_are_the_exporters() -> None:
    text = (TERRAFORM / "stepfunctions.tf").read_text()
    for placeholder in (
        names.ASL_ACTIVITY_ARN,
        names.ASL_TOKEN_ARN,
        names.ASL_STATE_MACHINE_PREFIX,
    ):
        assert f'"${placeholder}"' in text  # "$${...}": HCL's escape of a literal "${"
    cases = [c for c in load_cases() if c.flow is not None]
    for case in cases:
        assert case.flow is not None
        document = compile_for_terraform(case.flow, case.subflows)
        left = set(re.findall(r"\$\{[^}]*\}", document))
        assert left <= {
            names.ASL_ACTIVITY_ARN,
            names.ASL_TOKEN_ARN,
            names.ASL_STATE_MACHINE_PREFIX,
        }, case.id


def test_scheduled_runs_start_fresh_with_the_sites_instance_ids() -> None:
    schedule = resource("aws_scheduler_schedule.flows")
    target_input = schedule["target"][0]["input"]
    assert f"format = {RESUME_FORMAT}," in target_input
    assert "epoch = 0, resume = null" in target_input
    assert "<aws.scheduler.scheduled-time>" in target_input
    assert "${each.value.flow_name}:${each.value.schedule}@" in target_input
    assert schedule["state"] == '${var.schedules_enabled ? "ENABLED" : "DISABLED"}'
    assert variables()["schedules_enabled"]["default"] is False
    assert schedule["flexible_time_window"][0]["mode"] == "OFF"


# --- security settings -------------------------------------------------------------------------


def test_the_snapshot_bucket_is_private_encrypted_versioned_and_tls_only() -> None:
    assert resource("aws_s3_bucket_versioning.snapshots")["versioning_configuration"][0] == {
        "status": "Enabled"
    }
    block = resource("aws_s3_bucket_public_access_block.snapshots")
    for flag in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert block[flag] is True
    rule = resource("aws_s3_bucket_server_side_encryption_configuration.snapshots")["rule"][0]
    default = rule["apply_server_side_encryption_by_default"][0]
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"] == "${aws_kms_key.main.arn}"
    policy = data("aws_iam_policy_document.snapshots_bucket")
    tls = next(s for s in policy["statement"] if s["sid"] == "TlsOnly")
    assert tls["effect"] == "Deny"
    assert tls["condition"][0] == {
        "test": "Bool",
        "variable": "aws:SecureTransport",
        "values": ["false"],
    }
    ownership = resource("aws_s3_bucket_ownership_controls.snapshots")
    assert ownership["rule"][0]["object_ownership"] == "BucketOwnerEnforced"


def test_logs_are_kept_a_year_encrypted_and_everything_is_traced() -> None:
    assert variables()["log_retention_days"]["default"] >= 365
    for address in ("aws_cloudwatch_log_group.functions", "aws_cloudwatch_log_group.states"):
        group = resource(address)
        assert group["retention_in_days"] == "${var.log_retention_days}"
        assert group["kms_key_id"] == "${aws_kms_key.main.arn}"
    lambdas = resource("aws_lambda_function.functions")
    assert lambdas["tracing_config"][0]["mode"] == "Active"
    assert lambdas["kms_key_arn"] == "${aws_kms_key.main.arn}"
    assert lambdas["layers"] == ["${aws_lambda_layer_version.dependencies.arn}"]
    machine = resource("aws_sfn_state_machine.flows")
    assert machine["tracing_configuration"][0]["enabled"] is True
    assert machine["type"] == "STANDARD"
    logging = machine["logging_configuration"][0]
    assert logging["log_destination"] == "${aws_cloudwatch_log_group.states.arn}:*"
    assert resource("aws_kms_key.main")["enable_key_rotation"] is True
    url = resource("aws_lambda_function_url.continue")
    assert url["authorization_type"] == "AWS_IAM"


# --- least privilege -----------------------------------------------------------------------


def statements(address: str) -> list[dict[str, Any]]:
    """A policy document's statements, dynamic ones included (with the key they are for)."""
    document = data(address)
    found = [dict(s) for s in document.get("statement", [])]
    for dynamic in document.get("dynamic", []):
        body = dynamic["statement"]
        content = dict(body["content"][0])
        content["for_each"] = body["for_each"]
        found.append(content)
    return found


def _granting(address: str, action: str) -> list[dict[str, Any]]:
    return [s for s in statements(address) if action in s["actions"]]


def test_no_policy_grants_wildcard_actions() -> None:
    for address in blocks("data"):
        if not address.startswith("aws_iam_policy_document.") or address.endswith(".key"):
            continue  # the key policy: the account administers its own key
        for statement in statements(address):
            if statement.get("effect") == "Deny":
                continue  # denying everything over plain HTTP is the point
            for action in statement.get("actions", []):
                assert "*" not in action, (address, action)


def by_sid(address: str, sid: str) -> dict[str, Any]:
    (found,) = [s for s in statements(address) if s.get("sid") == sid]
    return found


def test_function_roles_reach_only_their_own_resources() -> None:
    policy = "aws_iam_policy_document.function"
    idempotency = by_sid(policy, "IdempotencyRecords")
    assert idempotency["resources"] == ["${aws_dynamodb_table.idempotency.arn}"]
    assert idempotency["for_each"] == '${each.key == "activity" ? [1] : []}'
    tokens = by_sid(policy, "StoreTaskTokens")
    assert tokens["actions"] == ["dynamodb:PutItem"]
    assert tokens["resources"] == ["${aws_dynamodb_table.tokens.arn}"]
    assert tokens["for_each"] == '${each.key == "tokens" ? [1] : []}'
    starts = _granting(policy, "states:StartExecution")
    assert sorted(start["for_each"] for start in starts) == [
        '${each.key == "continue" ? [1] : []}',
        '${each.key == "watchdog" ? [1] : []}',
    ]
    for start in starts:
        assert "values(local.machine_arns)" in start["resources"]
    for statement in statements(policy):
        for action in statement["actions"]:
            if action == "s3:ListBucket":  # the bucket itself, for one prefix only
                assert statement["resources"] == ["${aws_s3_bucket.snapshots.arn}"]
                assert statement["condition"][0]["variable"] == "s3:prefix"
                assert statement["condition"][0]["values"] == ["lifeboat/*"]
            elif action.startswith("s3:"):
                assert all(
                    r.startswith("${aws_s3_bucket.snapshots.arn}/") for r in statement["resources"]
                ), statement
            if action.startswith("dynamodb:"):
                assert statement["resources"][0] in (
                    "${aws_dynamodb_table.idempotency.arn}",
                    "${aws_dynamodb_table.tokens.arn}",
                    "${aws_dynamodb_table.leases.arn}",
                )
            if action.startswith("secretsmanager:"):
                assert statement["resources"] == ["${aws_secretsmanager_secret.keys.arn}"]
            if action.startswith("kms:"):
                assert statement["resources"] == ["${aws_kms_key.main.arn}"]


def test_the_state_machines_invoke_only_the_activity_and_token_functions() -> None:
    (invoke,) = _granting("aws_iam_policy_document.states", "lambda:InvokeFunction")
    assert invoke["resources"] == [
        '${local.function_arns["activity"]}',
        '${local.function_arns["activity"]}:*',
        '${local.function_arns["tokens"]}',
        '${local.function_arns["tokens"]}:*',
    ]
    (start,) = _granting("aws_iam_policy_document.states", "states:StartExecution")
    assert "values(local.machine_arns)" in start["resources"]
    (scheduled,) = _granting("aws_iam_policy_document.scheduler", "states:StartExecution")
    assert "local.machine_arns[s.flow_key]" in scheduled["resources"]
    (signal,) = _granting("aws_iam_policy_document.operator", "states:SendTaskSuccess")
    assert set(signal["actions"]) == {"states:SendTaskSuccess", "states:SendTaskFailure"}


def test_the_watchdog_runs_alone_every_minute_and_reaches_only_the_lifeboat() -> None:
    watchdog = functions()["watchdog"]
    assert watchdog["concurrency"] == 1  # two runs never overlap
    assert watchdog["timeout"] == 900  # as long as a Lambda may run
    schedule = resource("aws_scheduler_schedule.watchdog")
    assert schedule["schedule_expression"] == "${var.watchdog_schedule}"
    assert variables()["watchdog_schedule"]["default"] == "rate(1 minute)"
    assert schedule["state"] == '${var.site_id == "" ? "DISABLED" : "ENABLED"}'
    target = schedule["target"][0]
    assert target["arn"] == '${aws_lambda_function.functions["watchdog"].arn}'
    assert target["role_arn"] == "${aws_iam_role.watchdog_schedule.arn}"
    (invoke,) = _granting("aws_iam_policy_document.watchdog_schedule", "lambda:InvokeFunction")
    assert invoke["resources"] == ['${aws_lambda_function.functions["watchdog"].arn}']
    leases = resource("aws_dynamodb_table.leases")
    assert leases["hash_key"] == deployment.LEASE_PARTITION_KEY
    assert [a["name"] for a in leases["attribute"]] == [deployment.LEASE_PARTITION_KEY]
    assert leases["point_in_time_recovery"][0]["enabled"] is True
    assert leases["server_side_encryption"][0]["kms_key_arn"] == "${aws_kms_key.main.arn}"
    assert leases["deletion_protection_enabled"] is True
    policy = "aws_iam_policy_document.function"
    only_watchdog = '${each.key == "watchdog" ? [1] : []}'
    assert by_sid(policy, "SiteLeases")["for_each"] == only_watchdog
    assert by_sid(policy, "SiteLeases")["resources"] == ["${aws_dynamodb_table.leases.arn}"]
    claims = by_sid(policy, "ClaimReplicasWriteReports")
    assert claims["resources"] == ["${aws_s3_bucket.snapshots.arn}/lifeboat/*"]
    assert "s3:DeleteObject" not in claims["actions"]  # the watchdog never deletes a replica
    # the site: its own replicas only, and its lease
    replicas = by_sid("aws_iam_policy_document.operator", "LifeboatReplicas")
    assert replicas["resources"] == ["${aws_s3_bucket.snapshots.arn}/lifeboat/${var.site_id}/*"]
    lease = by_sid("aws_iam_policy_document.operator", "SiteLease")
    assert lease["resources"] == ["${aws_dynamodb_table.leases.arn}"]
    assert set(lease["actions"]) == {"dynamodb:GetItem", "dynamodb:PutItem"}


def test_variables_and_outputs_are_documented() -> None:
    readme = README.read_text()
    missing = {name for name in variables() if f"`{name}`" not in readme}
    assert not missing, f"variables missing from README.md: {sorted(missing)}"
    missing = {name for name in outputs() if f"`{name}`" not in readme}
    assert not missing, f"outputs missing from README.md: {sorted(missing)}"
    for output in outputs().values():
        assert output.get("description")
    for variable in variables().values():
        assert variable.get("description")


# --- checkov ---------------------------------------------------------------------------------


def test_every_checkov_skip_is_justified_inline() -> None:
    assert justified_checkov_skips(TF_FILES, "#") > 0


@pytest.mark.slow
def test_checkov_finds_no_failed_check_and_no_parsing_error() -> None:
    assert_checkov_passes(TERRAFORM, "terraform")
