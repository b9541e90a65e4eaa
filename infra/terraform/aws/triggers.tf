# The flows' triggers (docs/triggers.md): every trigger of var.flows reaches the trigger
# function (lambda_aws.triggers): an SQS event source mapping per queue trigger, an
# EventBridge rule per events trigger whose target wraps the event with the trigger's
# key. The function starts executions named after the instance id each message makes
# (a message delivered again starts nothing) or signals the instance a message names.

locals {
  deployed_triggers = flatten([
    for flow_key, flow in var.flows : [
      for trigger in flow.triggers : {
        key      = "${split("@", flow_key)[0]}/${trigger.name}"
        flow     = split("@", flow_key)[0]
        flow_key = flow_key
        trigger  = trigger
      }
    ]
  ])
  queue_triggers = { for t in local.deployed_triggers : t.key => t if t.trigger.source == "queue" }
  event_triggers = { for t in local.deployed_triggers : t.key => t if t.trigger.source == "events" }

  # RUSTYFLOWER_TRIGGERS: what adapters.aws.triggers.deployed_triggers reads
  triggers_setting = jsonencode([
    for t in local.deployed_triggers : merge(
      { flow = t.flow, machine_arn = local.machine_arns[t.flow_key], trigger = t.trigger },
      { queue_arn = t.trigger.source == "queue" ? aws_sqs_queue.services[t.trigger.queue].arn : null }
    )
  ])
  trigger_queue_arns = distinct([for t in values(local.queue_triggers) : aws_sqs_queue.services[t.trigger.queue].arn])
}

resource "aws_lambda_event_source_mapping" "queue_triggers" {
  for_each                = local.queue_triggers
  event_source_arn        = aws_sqs_queue.services[each.value.trigger.queue].arn
  function_name           = aws_lambda_function.functions["triggers"].arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]
}

resource "aws_cloudwatch_event_rule" "event_triggers" {
  for_each       = local.event_triggers
  name           = "${var.name_prefix}-${replace(each.key, "/", "-")}"
  event_bus_name = aws_cloudwatch_event_bus.services[each.value.trigger.bus].name
  # both sides are text: Terraform's conditional wants one type
  event_pattern = (
    lookup(each.value.trigger, "type", null) == null
    ? jsonencode({ account = [local.account] })
    : jsonencode({ "detail-type" = [each.value.trigger.type] })
  )
}

resource "aws_cloudwatch_event_target" "event_triggers" {
  for_each       = local.event_triggers
  rule           = aws_cloudwatch_event_rule.event_triggers[each.key].name
  event_bus_name = aws_cloudwatch_event_bus.services[each.value.trigger.bus].name
  arn            = aws_lambda_function.functions["triggers"].arn

  input_transformer {
    input_template = "{\"rustyflower_trigger\": \"${each.key}\", \"event\": <aws.events.event.json>}"
  }
}

resource "aws_lambda_permission" "event_triggers" {
  for_each      = local.event_triggers
  statement_id  = "trigger-${substr(sha256(each.key), 0, 16)}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.functions["triggers"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.event_triggers[each.key].arn
}

data "aws_iam_policy_document" "triggers" {
  statement {
    sid       = "ReadTriggerQueues"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
    resources = length(local.trigger_queue_arns) > 0 ? local.trigger_queue_arns : ["arn:${local.partition}:sqs:${local.region}:${local.account}:${local.service_prefix}none"]
  }

  statement {
    sid       = "StartTriggeredFlows"
    actions   = ["states:StartExecution"]
    resources = length(local.machine_arns) > 0 ? values(local.machine_arns) : ["${local.state_machine_arn_prefix}none"]
  }

  statement {
    sid       = "SignalEventWaits"
    actions   = ["states:SendTaskSuccess"]
    resources = ["*"] # task tokens have no ARN to scope them by
  }

  statement {
    sid       = "RememberSignalledMessages"
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.idempotency.arn]
  }

  statement {
    sid       = "TakeTaskTokens"
    actions   = ["dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:PutItem"]
    resources = [aws_dynamodb_table.tokens.arn]
  }
}

resource "aws_iam_role_policy" "triggers" {
  name   = "rustyflower-triggers-sources"
  role   = aws_iam_role.functions["triggers"].id
  policy = data.aws_iam_policy_document.triggers.json
}
