# The lifeboat's AWS side (docs/failover.md, "Replication, lease and watchdog"):
#
# * the site lease table: one item per site, written only by conditional PutItem (the site
#   renews it; the watchdog takes it over when it is stale);
# * the replicas live in the snapshot bucket under lifeboat/<site>/ (main.tf);
# * the watchdog function (main.tf, local.functions.watchdog) runs every minute from an
#   EventBridge Scheduler schedule, enabled once var.site_id names the site to watch.

resource "aws_dynamodb_table" "leases" {
  name                        = "${var.name_prefix}-leases"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "site"
  deletion_protection_enabled = true

  attribute {
    name = "site"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

data "aws_iam_policy_document" "watchdog_schedule" {
  statement {
    sid       = "InvokeTheWatchdog"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.functions["watchdog"].arn]
  }

  statement {
    sid       = "ProjectKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role" "watchdog_schedule" {
  name               = "${var.name_prefix}-watchdog-schedule-role"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
}

resource "aws_iam_role_policy" "watchdog_schedule" {
  name   = "rustyflower-watchdog-schedule"
  role   = aws_iam_role.watchdog_schedule.id
  policy = data.aws_iam_policy_document.watchdog_schedule.json
}

resource "aws_scheduler_schedule" "watchdog" {
  name                = "${var.name_prefix}-watchdog"
  group_name          = aws_scheduler_schedule_group.flows.name
  schedule_expression = var.watchdog_schedule
  state               = var.site_id == "" ? "DISABLED" : "ENABLED"
  kms_key_arn         = aws_kms_key.main.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.functions["watchdog"].arn
    role_arn = aws_iam_role.watchdog_schedule.arn
    input    = jsonencode({ source = "rustyflower.watchdog" })

    # a run that fails is redone by the next one; an old event has nothing to add
    retry_policy {
      maximum_event_age_in_seconds = 60
      maximum_retry_attempts       = 0
    }
  }
}
