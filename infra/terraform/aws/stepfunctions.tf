# One Standard state machine per flow, from the ASL the compiler exported with placeholders.

resource "aws_cloudwatch_log_group" "states" {
  name              = "/aws/vendedlogs/states/${var.name_prefix}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

data "aws_iam_policy_document" "states_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "states" {
  name               = "${var.name_prefix}-states-role"
  assume_role_policy = data.aws_iam_policy_document.states_assume.json
}

data "aws_iam_policy_document" "states" {
  statement {
    sid     = "CallTheFunctions"
    actions = ["lambda:InvokeFunction"]
    resources = [
      local.function_arns["activity"],
      "${local.function_arns["activity"]}:*",
      local.function_arns["tokens"],
      "${local.function_arns["tokens"]}:*",
    ]
  }

  statement {
    sid       = "StartSubFlows"
    actions   = ["states:StartExecution"]
    resources = length(local.machine_arns) > 0 ? values(local.machine_arns) : ["${local.state_machine_arn_prefix}none"]
  }

  statement {
    sid       = "FollowSubFlows"
    actions   = ["states:DescribeExecution", "states:StopExecution"]
    resources = length(local.execution_arns) > 0 ? local.execution_arns : ["${local.state_machine_arn_prefix}none"]
  }

  statement {
    sid       = "SubFlowCompletionEvents"
    actions   = ["events:PutTargets", "events:PutRule", "events:DescribeRule"]
    resources = ["arn:${local.partition}:events:${local.region}:${local.account}:rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"]
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    resources = ["*"] # X-Ray has no resource-level permissions
  }

  statement {
    sid = "ExecutionLogs"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    resources = ["*"] # log delivery actions have no resource-level permissions
  }

  statement {
    sid       = "ProjectKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "states" {
  name   = "rustyflower-states"
  role   = aws_iam_role.states.id
  policy = data.aws_iam_policy_document.states.json
}

resource "aws_sfn_state_machine" "flows" {
  for_each = var.flows

  name     = local.machine_names[each.key]
  role_arn = aws_iam_role.states.arn
  type     = "STANDARD"

  # The five placeholders of `python -m lambda_aws.asl` (lambda_aws.settings.ASL_*),
  # replaced as plain text: nothing else in the document is interpreted.
  definition = replace(
    replace(
      replace(
        replace(
          replace(
            file(startswith(each.value.asl_file, "/") ? each.value.asl_file : "${path.root}/${each.value.asl_file}"),
            "$${activity_function_arn}", aws_lambda_function.functions["activity"].arn
          ),
          "$${token_function_arn}", aws_lambda_function.functions["tokens"].arn
        ),
        "$${state_machine_arn_prefix}", local.state_machine_arn_prefix
      ),
      "$${service_queue_url_base}", local.service_queue_url_base
    ),
    "$${service_prefix}", local.service_prefix
  )

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.states.arn}:*"
    include_execution_data = true
    level                  = var.state_machine_log_level
  }

  tracing_configuration {
    enabled = true
  }

  encryption_configuration {
    type                              = "CUSTOMER_MANAGED_KMS_KEY"
    kms_key_id                        = aws_kms_key.main.arn
    kms_data_key_reuse_period_seconds = 300
  }

  depends_on = [aws_iam_role_policy.states, aws_iam_role_policy.states_services]
}
