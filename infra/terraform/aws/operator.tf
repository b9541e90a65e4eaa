# What the site (its watchdog, the rustyflower CLI) needs in AWS: attach this policy to
# the role it runs as. It continues snapshots, reads them back, signals event waits and
# replicates snapshots into the bucket (lifeboat/<site>/) and renews the site lease.

data "aws_iam_policy_document" "operator" {
  statement {
    sid     = "ContinueAndFailBack"
    actions = ["lambda:InvokeFunction", "lambda:InvokeFunctionUrl"]
    resources = [
      aws_lambda_function.functions["continue"].arn,
      aws_lambda_function.functions["failback"].arn,
    ]
  }

  statement {
    sid       = "SignalEventWaits"
    actions   = ["states:SendTaskSuccess", "states:SendTaskFailure"]
    resources = ["*"]
  }

  statement {
    sid       = "TaskTokens"
    actions   = ["dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:PutItem"]
    resources = [aws_dynamodb_table.tokens.arn]
  }

  statement {
    sid       = "WatchExecutions"
    actions   = ["states:ListExecutions", "states:DescribeStateMachine"]
    resources = length(local.machine_arns) > 0 ? values(local.machine_arns) : ["${local.state_machine_arn_prefix}none"]
  }

  statement {
    sid       = "ReadExecutions"
    actions   = ["states:DescribeExecution", "states:GetExecutionHistory", "states:StopExecution"]
    resources = length(local.execution_arns) > 0 ? local.execution_arns : ["${local.state_machine_arn_prefix}none"]
  }

  statement {
    sid       = "ReplicateSnapshots"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${aws_s3_bucket.snapshots.arn}/*"]
  }

  statement {
    sid       = "ListSnapshots"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.snapshots.arn]
  }

  statement {
    sid       = "LifeboatReplicas"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.snapshots.arn}/lifeboat/${var.site_id}/*"]
  }

  statement {
    sid       = "SiteLease"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem"]
    resources = [aws_dynamodb_table.leases.arn]
  }

  statement {
    sid       = "ProjectKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }

  statement {
    sid       = "SchedulesOnFailover"
    actions   = ["scheduler:GetSchedule", "scheduler:UpdateSchedule"]
    resources = ["arn:${local.partition}:scheduler:${local.region}:${local.account}:schedule/${var.name_prefix}/*"]
  }

  statement {
    sid       = "PassSchedulerRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.scheduler.arn]
  }
}

resource "aws_iam_policy" "operator" {
  name        = "${var.name_prefix}-operator"
  description = "What the RustyFlower site needs in AWS: continue, fail back, signal, replicate"
  policy      = data.aws_iam_policy_document.operator.json
}
