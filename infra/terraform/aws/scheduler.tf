# The flows' cron schedules, DISABLED while the site runs them (schedules_enabled = false).
# A scheduled run's instance id is the site's: "<flow>:<schedule>@<fire time, UTC>".

locals {
  schedules = merge([
    for flow_key, flow in var.flows : {
      for schedule_key, schedule in flow.schedules :
      "${flow_key}/${schedule_key}" => {
        flow_key    = flow_key
        flow_name   = split("@", flow_key)[0]
        schedule    = schedule_key
        expression  = schedule.expression
        timezone    = schedule.timezone
        input_json  = schedule.input_json
        schedule_id = substr("${local.machine_names[flow_key]}-${replace(schedule_key, "/[^0-9A-Za-z_.-]/", "-")}", 0, 64)
      }
    }
  ]...)
}

resource "aws_scheduler_schedule_group" "flows" {
  name = var.name_prefix
}

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
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

resource "aws_iam_role" "scheduler" {
  name               = "${var.name_prefix}-scheduler-role"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "StartScheduledFlows"
    actions   = ["states:StartExecution"]
    resources = length(local.schedules) > 0 ? distinct([for s in values(local.schedules) : local.machine_arns[s.flow_key]]) : ["${local.state_machine_arn_prefix}none"]
  }

  statement {
    sid       = "ProjectKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "rustyflower-scheduler"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "flows" {
  for_each = local.schedules

  name                         = each.value.schedule_id
  group_name                   = aws_scheduler_schedule_group.flows.name
  schedule_expression          = each.value.expression
  schedule_expression_timezone = each.value.timezone
  state                        = var.schedules_enabled ? "ENABLED" : "DISABLED"
  kms_key_arn                  = aws_kms_key.main.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_sfn_state_machine.flows[each.value.flow_key].arn
    role_arn = aws_iam_role.scheduler.arn
    # adapters.aws.fresh_input; Scheduler fills in <aws.scheduler.scheduled-time>
    input = jsonencode({
      rf = {
        format      = 1
        instance_id = "${each.value.flow_name}:${each.value.schedule}@<aws.scheduler.scheduled-time>"
        epoch       = 0
        resume      = null
      }
      input = jsondecode(each.value.input_json)
    })

    retry_policy {
      maximum_event_age_in_seconds = 3600
      maximum_retry_attempts       = 3
    }
  }
}
