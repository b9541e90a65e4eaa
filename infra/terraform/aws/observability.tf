# What operators watch in CloudWatch: one dashboard, a row per flow (named after the
# flow), from the metrics Step Functions publishes per state machine (AWS/States) and
# the ones RustyFlower's functions publish (namespace RustyFlower): activity calls per
# flow, state and activity (lambda_aws.activity: dimensions flow, state, activity,
# service), and what the triggers did (lambda_aws.triggers).

locals {
  metrics_namespace = "RustyFlower"

  flow_rows = flatten([
    for index, key in sort(keys(var.flows)) : [
      {
        type   = "text"
        x      = 0
        y      = index * 7
        width  = 24
        height = 1
        properties = {
          markdown = "## ${key}  (state machine ${local.machine_names[key]})"
        }
      },
      {
        type   = "metric"
        x      = 0
        y      = index * 7 + 1
        width  = 8
        height = 6
        properties = {
          title  = "${key}: executions"
          region = local.region
          stat   = "Sum"
          period = 300
          metrics = [
            for name in ["ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"] :
            ["AWS/States", name, "StateMachineArn", local.machine_arns[key]]
          ]
        }
      },
      {
        type   = "metric"
        x      = 8
        y      = index * 7 + 1
        width  = 8
        height = 6
        properties = {
          title  = "${key}: execution time (ms)"
          region = local.region
          period = 300
          metrics = [
            ["AWS/States", "ExecutionTime", "StateMachineArn", local.machine_arns[key], { stat = "p50" }],
            ["AWS/States", "ExecutionTime", "StateMachineArn", local.machine_arns[key], { stat = "p90" }],
          ]
        }
      },
      {
        type   = "metric"
        x      = 16
        y      = index * 7 + 1
        width  = 8
        height = 6
        properties = {
          title  = "${key}: activity calls by state"
          region = local.region
          period = 300
          metrics = [
            for name in ["ActivitySucceeded", "ActivityFailed"] : [{
              expression = "SEARCH('{${local.metrics_namespace},activity,flow,service,state} MetricName=\"${name}\" flow=\"${split("@", key)[0]}\"', 'Sum', 300)"
              id         = lower(name)
              label      = name
            }]
          ]
        }
      },
    ]
  ])

  trigger_row = {
    type   = "metric"
    x      = 0
    y      = length(var.flows) * 7
    width  = 24
    height = 6
    properties = {
      title  = "triggers"
      region = local.region
      stat   = "Sum"
      period = 300
      metrics = [
        for name in ["TriggerStarted", "TriggerRedelivered", "TriggerSignalled", "TriggerIgnored"] :
        [local.metrics_namespace, name, "service", "rustyflower"]
      ]
    }
  }
}

resource "aws_cloudwatch_dashboard" "flows" {
  dashboard_name = "${var.name_prefix}-flows"
  dashboard_body = jsonencode({ widgets = concat(local.flow_rows, [local.trigger_row]) })
}
