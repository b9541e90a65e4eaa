# RustyFlower's AWS lifeboat: the flows' state machines, the Lambda functions they call,
# the tables of idempotency records and task tokens, the snapshot bucket, the schedules.
# README.md lists the variables and outputs; docs/aws-deploy.md walks through a deployment.

provider "aws" {
  default_tags {
    tags = merge({ "rustyflower:deployment" = var.name_prefix }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition

  # "<flow>@<version>" -> "<flow>-v<version>" with every other character a "-":
  # adapters.aws.deployment.state_machine_name, which the continue function uses too.
  machine_names = {
    for key in keys(var.flows) :
    key => "${var.name_prefix}-${replace(replace(key, "@", "-v"), "/[^A-Za-z0-9_-]/", "-")}"
  }
  state_machine_arn_prefix = "arn:${local.partition}:states:${local.region}:${local.account}:stateMachine:${var.name_prefix}-"
  machine_arns             = { for key, name in local.machine_names : key => "${local.state_machine_arn_prefix}${trimprefix(name, "${var.name_prefix}-")}" }
  execution_arns           = [for key, name in local.machine_names : "arn:${local.partition}:states:${local.region}:${local.account}:execution:${name}:*"]

  function_names = {
    activity = "${var.name_prefix}-activity"
    tokens   = "${var.name_prefix}-tokens"
    continue = "${var.name_prefix}-continue"
    failback = "${var.name_prefix}-failback"
    watchdog = "${var.name_prefix}-watchdog"
    triggers = "${var.name_prefix}-triggers"
  }
  function_arns = {
    for key, name in local.function_names :
    key => "arn:${local.partition}:lambda:${local.region}:${local.account}:function:${name}"
  }

  powertools = {
    POWERTOOLS_SERVICE_NAME      = "rustyflower"
    POWERTOOLS_METRICS_NAMESPACE = "RustyFlower"
    POWERTOOLS_LOG_LEVEL         = "INFO"
  }

  # The RustyFlower settings of each function: exactly lambda_aws.settings.FUNCTION_ENV.
  functions = {
    activity = {
      handler     = "lambda_aws.activity.handler"
      memory      = var.activity_memory_mb
      timeout     = var.activity_timeout_seconds
      concurrency = var.activity_concurrency
      environment = {
        RUSTYFLOWER_ACTIVITIES              = var.activities_module
        RUSTYFLOWER_IDEMPOTENCY_TABLE       = aws_dynamodb_table.idempotency.name
        RUSTYFLOWER_IDEMPOTENCY             = "on"
        RUSTYFLOWER_IDEMPOTENCY_TTL_SECONDS = tostring(var.idempotency_ttl_seconds)
      }
    }
    tokens = {
      handler     = "lambda_aws.tokens.handler"
      memory      = 256
      timeout     = 30
      concurrency = var.control_concurrency
      environment = {
        RUSTYFLOWER_TOKENS_TABLE      = aws_dynamodb_table.tokens.name
        RUSTYFLOWER_TOKEN_TTL_SECONDS = tostring(var.token_ttl_seconds)
      }
    }
    continue = {
      handler     = "lambda_aws.continuation.handler"
      memory      = 512
      timeout     = 60
      concurrency = var.control_concurrency
      environment = {
        RUSTYFLOWER_STATE_MACHINE_PREFIX = local.state_machine_arn_prefix
        RUSTYFLOWER_SNAPSHOT_BUCKET      = aws_s3_bucket.snapshots.bucket
        RUSTYFLOWER_KEYS_SECRET          = aws_secretsmanager_secret.keys.arn
        RUSTYFLOWER_REQUIRE_SIGNATURE    = tostring(var.require_signature)
      }
    }
    failback = {
      handler     = "lambda_aws.failback.handler"
      memory      = 1024
      timeout     = 300
      concurrency = var.control_concurrency
      environment = {
        RUSTYFLOWER_STATE_MACHINE_PREFIX = local.state_machine_arn_prefix
        RUSTYFLOWER_SNAPSHOT_BUCKET      = aws_s3_bucket.snapshots.bucket
        RUSTYFLOWER_KEYS_SECRET          = aws_secretsmanager_secret.keys.arn
        RUSTYFLOWER_REQUIRE_SIGNATURE    = tostring(var.require_signature)
      }
    }
    # lifeboat.tf: run by EventBridge Scheduler; one at a time (reserved concurrency 1),
    # as long as a Lambda may run, so a takeover of many instances finishes in one run
    watchdog = {
      handler     = "lambda_aws.watchdog.handler"
      memory      = 1024
      timeout     = 900
      concurrency = 1
      environment = {
        RUSTYFLOWER_SITE_ID                = var.site_id
        RUSTYFLOWER_TAKEOVER_AFTER_SECONDS = tostring(var.takeover_after_seconds)
        RUSTYFLOWER_REPLICA_BUCKET         = aws_s3_bucket.snapshots.bucket
        RUSTYFLOWER_LEASE_TABLE            = aws_dynamodb_table.leases.name
        RUSTYFLOWER_STATE_MACHINE_PREFIX   = local.state_machine_arn_prefix
        RUSTYFLOWER_SNAPSHOT_BUCKET        = aws_s3_bucket.snapshots.bucket
        RUSTYFLOWER_KEYS_SECRET            = aws_secretsmanager_secret.keys.arn
        RUSTYFLOWER_REQUIRE_SIGNATURE      = tostring(var.require_signature)
      }
    }
    triggers = {
      handler     = "lambda_aws.triggers.handler"
      memory      = 256
      timeout     = 60
      concurrency = var.control_concurrency
      environment = {
        RUSTYFLOWER_TRIGGERS                = local.triggers_setting
        RUSTYFLOWER_IDEMPOTENCY_TABLE       = aws_dynamodb_table.idempotency.name
        RUSTYFLOWER_IDEMPOTENCY_TTL_SECONDS = tostring(var.idempotency_ttl_seconds)
        RUSTYFLOWER_TOKENS_TABLE            = aws_dynamodb_table.tokens.name
        RUSTYFLOWER_TOKEN_TTL_SECONDS       = tostring(var.token_ttl_seconds)
      }
    }
  }
}

# --- encryption key ----------------------------------------------------------------------

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:a key policy names its own key as "*"; the account root statement is what delegates key use to IAM policies
  #checkov:skip=CKV_AWS_111:a key policy names its own key as "*"; write access is limited to this account's principals
  #checkov:skip=CKV_AWS_356:a key policy's resource "*" is the key itself, it cannot name its own ARN
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncrypt"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:*"]
    }
  }

  statement {
    sid       = "SchedulerEncryptsTargets"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_kms_key" "main" {
  description             = "RustyFlower ${var.name_prefix}: snapshots, tables, logs, secrets"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.main.key_id
}

# --- snapshot bucket ---------------------------------------------------------------------

resource "aws_s3_bucket" "snapshots" {
  #checkov:skip=CKV_AWS_144:the bucket is already the copy of the site's snapshots; a second region is a choice of the deployment (add replication around this module)
  #checkov:skip=CKV2_AWS_62:nothing reacts to new snapshots; the continue and failback functions are called explicitly
  bucket_prefix = "${var.name_prefix}-snapshots-"
  force_destroy = false
}

resource "aws_s3_bucket_ownership_controls" "snapshots" {
  bucket = aws_s3_bucket.snapshots.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "snapshots" {
  bucket                  = aws_s3_bucket.snapshots.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "snapshots" {
  bucket = aws_s3_bucket.snapshots.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "snapshots" {
  bucket = aws_s3_bucket.snapshots.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "snapshots" {
  bucket = aws_s3_bucket.snapshots.id

  rule {
    id     = "old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 90
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.snapshots]
}

resource "aws_s3_bucket_logging" "snapshots" {
  count         = var.access_log_bucket == null ? 0 : 1
  bucket        = aws_s3_bucket.snapshots.id
  target_bucket = var.access_log_bucket
  target_prefix = "${var.name_prefix}-snapshots/"
}

data "aws_iam_policy_document" "snapshots_bucket" {
  statement {
    sid     = "TlsOnly"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.snapshots.arn,
      "${aws_s3_bucket.snapshots.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "Tls12OrNewer"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.snapshots.arn, "${aws_s3_bucket.snapshots.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "snapshots" {
  bucket = aws_s3_bucket.snapshots.id
  policy = data.aws_iam_policy_document.snapshots_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.snapshots]
}

# --- tables --------------------------------------------------------------------------------

resource "aws_dynamodb_table" "idempotency" {
  name                        = "${var.name_prefix}-idempotency"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "id"
  deletion_protection_enabled = true

  attribute {
    name = "id"
    type = "S"
  }

  ttl {
    attribute_name = "expiration"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

resource "aws_dynamodb_table" "tokens" {
  name                        = "${var.name_prefix}-tokens"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "waiter"
  range_key                   = "rank"
  deletion_protection_enabled = true

  attribute {
    name = "waiter"
    type = "S"
  }

  attribute {
    name = "rank"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

# --- snapshot keys -------------------------------------------------------------------------

resource "aws_secretsmanager_secret" "keys" {
  #checkov:skip=CKV2_AWS_57:the snapshot keys are rotated with the site (a new key id in front of the list, see docs/aws-deploy.md), not by a rotation Lambda
  name_prefix             = "${var.name_prefix}-snapshot-keys-"
  description             = "RUSTYFLOWER_SIGNING_KEYS (and RUSTYFLOWER_ENCRYPTION_KEYS) as a JSON object; set its value with the CLI, never in Terraform state"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 30
}

# --- Lambda functions ------------------------------------------------------------------------

resource "aws_lambda_layer_version" "dependencies" {
  layer_name               = "${var.name_prefix}-dependencies"
  description              = "RustyFlower's Python dependencies (lambda_aws/requirements.txt)"
  filename                 = var.layer_zip
  source_code_hash         = filebase64sha256(var.layer_zip)
  compatible_runtimes      = [var.lambda_runtime]
  compatible_architectures = [var.lambda_architecture]
}

resource "aws_cloudwatch_log_group" "functions" {
  for_each          = local.function_names
  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "functions" {
  for_each           = local.function_names
  name               = "${each.value}-role"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_lambda_function" "functions" {
  #checkov:skip=CKV_AWS_116:invoked synchronously (by Step Functions, the site and operators), but for the watchdog, which EventBridge Scheduler invokes every minute with a retry policy (lifeboat.tf): a run that fails is redone by the next one, a DLQ would hold nothing to replay
  #checkov:skip=CKV_AWS_117:the functions reach only AWS APIs with IAM; a VPC would add NAT or endpoints for no isolation gain (add vpc_config around this module if required)
  #checkov:skip=CKV_AWS_272:the package is built reproducibly from a reviewed checkout (python -m lambda_aws.package); add an AWS Signer profile where code signing is mandated
  for_each = local.functions

  function_name                  = local.function_names[each.key]
  description                    = "RustyFlower ${each.key} function"
  role                           = aws_iam_role.functions[each.key].arn
  runtime                        = var.lambda_runtime
  architectures                  = [var.lambda_architecture]
  handler                        = each.value.handler
  filename                       = var.function_zip
  source_code_hash               = filebase64sha256(var.function_zip)
  layers                         = [aws_lambda_layer_version.dependencies.arn]
  memory_size                    = each.value.memory
  timeout                        = each.value.timeout
  reserved_concurrent_executions = each.value.concurrency
  kms_key_arn                    = aws_kms_key.main.arn

  environment {
    variables = merge(local.powertools, each.value.environment)
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.functions[each.key].name
  }

  depends_on = [
    aws_cloudwatch_log_group.functions,
    aws_iam_role_policy.functions,
  ]
}

resource "aws_lambda_function_url" "continue" {
  function_name      = aws_lambda_function.functions["continue"].function_name
  authorization_type = "AWS_IAM"
}

resource "aws_lambda_permission" "operator_continue" {
  for_each      = toset(var.operator_principal_arns)
  statement_id  = "continue-${substr(sha256(each.value), 0, 16)}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.functions["continue"].function_name
  principal     = each.value
}

resource "aws_lambda_permission" "operator_continue_url" {
  for_each               = toset(var.operator_principal_arns)
  statement_id           = "continue-url-${substr(sha256(each.value), 0, 16)}"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.functions["continue"].function_name
  principal              = each.value
  function_url_auth_type = "AWS_IAM"
}

resource "aws_lambda_permission" "operator_failback" {
  for_each      = toset(var.operator_principal_arns)
  statement_id  = "failback-${substr(sha256(each.value), 0, 16)}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.functions["failback"].function_name
  principal     = each.value
}

# --- the functions' permissions (one role each, least privilege) ------------------------------

data "aws_iam_policy_document" "function" {
  for_each = local.function_names

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.functions[each.key].arn}:*"]
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions
  }

  statement {
    sid       = "ProjectKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.main.arn]
  }

  dynamic "statement" {
    for_each = each.key == "activity" ? [1] : []
    content {
      sid       = "IdempotencyRecords"
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
      resources = [aws_dynamodb_table.idempotency.arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "tokens" ? [1] : []
    content {
      sid       = "StoreTaskTokens"
      actions   = ["dynamodb:PutItem"]
      resources = [aws_dynamodb_table.tokens.arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "continue" ? [1] : []
    content {
      sid       = "StartFlows"
      actions   = ["states:DescribeStateMachine", "states:StartExecution"]
      resources = length(local.machine_arns) > 0 ? values(local.machine_arns) : ["${local.state_machine_arn_prefix}none"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "continue" ? [1] : []
    content {
      sid       = "SeeStartedExecutions"
      actions   = ["states:DescribeExecution"]
      resources = length(local.execution_arns) > 0 ? local.execution_arns : ["${local.state_machine_arn_prefix}none"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "continue" ? [1] : []
    content {
      sid       = "KeepBaseSnapshots"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.snapshots.arn}/continued/*"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "failback" ? [1] : []
    content {
      sid = "ReadExecutions"
      actions = [
        "states:DescribeExecution",
        "states:DescribeStateMachineForExecution",
        "states:GetExecutionHistory",
        "states:StopExecution",
      ]
      resources = length(local.execution_arns) > 0 ? local.execution_arns : ["${local.state_machine_arn_prefix}none"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "failback" ? [1] : []
    content {
      sid       = "ReadBaseSnapshots"
      actions   = ["s3:GetObject"]
      resources = ["${aws_s3_bucket.snapshots.arn}/continued/*"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "failback" ? [1] : []
    content {
      sid       = "WriteFailbackSnapshots"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.snapshots.arn}/failback/*"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "watchdog" ? [1] : []
    content {
      sid       = "SiteLeases"
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem"]
      resources = [aws_dynamodb_table.leases.arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "watchdog" ? [1] : []
    content {
      sid       = "ClaimReplicasWriteReports"
      actions   = ["s3:GetObject", "s3:PutObject"]
      resources = ["${aws_s3_bucket.snapshots.arn}/lifeboat/*"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "watchdog" ? [1] : []
    content {
      sid       = "ListReplicas"
      actions   = ["s3:ListBucket"]
      resources = [aws_s3_bucket.snapshots.arn]
      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["lifeboat/*"]
      }
    }
  }

  dynamic "statement" {
    for_each = each.key == "watchdog" ? [1] : []
    content {
      sid       = "ContinueFlows"
      actions   = ["states:DescribeStateMachine", "states:StartExecution"]
      resources = length(local.machine_arns) > 0 ? values(local.machine_arns) : ["${local.state_machine_arn_prefix}none"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "watchdog" ? [1] : []
    content {
      sid       = "SeeContinuedExecutions"
      actions   = ["states:DescribeExecution"]
      resources = length(local.execution_arns) > 0 ? local.execution_arns : ["${local.state_machine_arn_prefix}none"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "watchdog" ? [1] : []
    content {
      sid       = "KeepTakenOverBaseSnapshots"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.snapshots.arn}/continued/*"]
    }
  }

  dynamic "statement" {
    for_each = contains(["continue", "failback", "watchdog"], each.key) ? [1] : []
    content {
      sid       = "SnapshotKeys"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.keys.arn]
    }
  }
}

resource "aws_iam_role_policy" "functions" {
  for_each = local.function_names
  name     = "rustyflower-${each.key}"
  role     = aws_iam_role.functions[each.key].id
  policy   = data.aws_iam_policy_document.function[each.key].json
}

resource "aws_iam_role_policy_attachment" "activity_extra" {
  for_each   = toset(var.activity_policy_arns)
  role       = aws_iam_role.functions["activity"].name
  policy_arn = each.value
}
