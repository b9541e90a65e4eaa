output "state_machine_arns" {
  description = "Flow key (\"<flow>@<version>\") -> state machine ARN."
  value       = { for key, machine in aws_sfn_state_machine.flows : key => machine.arn }
}

output "state_machine_arn_prefix" {
  description = "ARN of the flow machines up to \"<flow>-v<version>\" (RUSTYFLOWER_STATE_MACHINE_PREFIX)."
  value       = local.state_machine_arn_prefix
}

output "activity_function_arn" {
  description = "The activity function the machines invoke."
  value       = aws_lambda_function.functions["activity"].arn
}

output "token_function_arn" {
  description = "The function that stores the task tokens of event waits."
  value       = aws_lambda_function.functions["tokens"].arn
}

output "continue_function_arn" {
  description = "The function that continues a signed snapshot (direct invoke)."
  value       = aws_lambda_function.functions["continue"].arn
}

output "continue_function_url" {
  description = "The continue function's URL (POST a snapshot, SigV4-signed: AWS_IAM auth)."
  value       = aws_lambda_function_url.continue.function_url
}

output "failback_function_arn" {
  description = "The function that reads an execution back into a signed snapshot."
  value       = aws_lambda_function.functions["failback"].arn
}

output "snapshot_bucket" {
  description = "The snapshot bucket (replicas from the site, continued/ and failback/ snapshots)."
  value       = aws_s3_bucket.snapshots.bucket
}

output "idempotency_table" {
  description = "DynamoDB table of the activity calls' idempotency records."
  value       = aws_dynamodb_table.idempotency.name
}

output "tokens_table" {
  description = "DynamoDB table of the event waits' task tokens (RUSTYFLOWER_TOKENS_TABLE for `rustyflower signal`)."
  value       = aws_dynamodb_table.tokens.name
}

output "keys_secret_arn" {
  description = "Secrets Manager secret to put the snapshot keys in (JSON, see docs/aws-deploy.md)."
  value       = aws_secretsmanager_secret.keys.arn
}

output "kms_key_arn" {
  description = "The project's KMS key (bucket, tables, logs, secret, function settings)."
  value       = aws_kms_key.main.arn
}

output "operator_policy_arn" {
  description = "IAM policy to attach to the site's role (continue, fail back, signal, replicate)."
  value       = aws_iam_policy.operator.arn
}

output "schedule_names" {
  description = "Schedule key (\"<flow>@<version>/<schedule>\") -> EventBridge Scheduler schedule name."
  value       = { for key, schedule in aws_scheduler_schedule.flows : key => schedule.name }
}

output "lease_table_name" {
  description = "The site lease table (the site's RUSTYFLOWER_LEASE_TABLE)."
  value       = aws_dynamodb_table.leases.name
}

output "replica_bucket" {
  description = "The bucket of the site's replicas, under lifeboat/<site>/ (the site's RUSTYFLOWER_REPLICA_BUCKET)."
  value       = aws_s3_bucket.snapshots.bucket
}

output "watchdog_function_name" {
  description = "The watchdog function (its logs say what each run found and did)."
  value       = aws_lambda_function.functions["watchdog"].function_name
}

output "dashboard_name" {
  description = "The CloudWatch dashboard of the flows (a row per flow)."
  value       = aws_cloudwatch_dashboard.flows.dashboard_name
}
