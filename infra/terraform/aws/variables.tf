# Every variable is documented in README.md (a test checks that each one is).

variable "name_prefix" {
  description = "Prefix of every resource name (functions, tables, machines, bucket)."
  type        = string
  default     = "rustyflower"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,23}$", var.name_prefix))
    error_message = "name_prefix: 2 to 24 characters, lower-case letters, digits and '-'."
  }
}

variable "function_zip" {
  description = "The function package built by `python -m lambda_aws.package FUNCTION.zip`."
  type        = string
}

variable "layer_zip" {
  description = "The dependency layer built by `python -m lambda_aws.package ... --layer LAYER.zip`."
  type        = string
}

variable "flows" {
  description = <<-EOT
    The flows to deploy, keyed by "<flow name>@<version>". asl_file is the ASL exported by
    `rustyflower export asl FLOW --for-terraform -o FILE` (it names the functions and the
    sub-flow machines with the placeholders this module replaces). schedules are the flow's
    cron schedules in EventBridge Scheduler syntax, keyed by schedule name. services names
    the queues, buses and stores its service tasks and triggers use (created in
    services.tf); triggers are the flow's triggers as its definition declares them
    (wired in triggers.tf).
  EOT
  type = map(object({
    asl_file = string
    schedules = optional(map(object({
      expression = string
      timezone   = optional(string, "UTC")
      input_json = optional(string, "null")
    })), {})
    services = optional(object({
      queues = optional(list(string), [])
      buses  = optional(list(string), [])
      stores = optional(list(string), [])
    }), {})
    triggers = optional(list(map(string)), [])
  }))
  default = {}

  validation {
    condition = alltrue([
      for key in keys(var.flows) : can(regex("^[A-Za-z][A-Za-z0-9_-]{0,79}@[^@]{1,40}$", key))
    ])
    error_message = "flows: each key is \"<flow name>@<version>\"."
  }
}

variable "schedules_enabled" {
  description = "Run the flows' schedules in AWS. Keep false while the on-premises scheduler runs them; the failover turns it on."
  type        = bool
  default     = false
}

variable "activities_module" {
  description = "RUSTYFLOWER_ACTIVITIES: the module (or module:attribute) of the ActivityRegistry the activity function runs."
  type        = string
  default     = "lambda_aws.activities"
}

variable "activity_policy_arns" {
  description = "Extra IAM policies for the activity function (what your activities call)."
  type        = list(string)
  default     = []
}

variable "lambda_runtime" {
  description = "Python runtime of the functions (the layer must be built for it)."
  type        = string
  default     = "python3.12"
}

variable "lambda_architecture" {
  description = "arm64 or x86_64 (the layer must be built for it: --arch)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture is arm64 or x86_64."
  }
}

variable "activity_timeout_seconds" {
  description = "Timeout of the activity function (an activity call runs at most this long)."
  type        = number
  default     = 300
}

variable "activity_memory_mb" {
  description = "Memory of the activity function."
  type        = number
  default     = 512
}

variable "activity_concurrency" {
  description = "Reserved concurrency of the activity function (parallel activity calls)."
  type        = number
  default     = 50
}

variable "control_concurrency" {
  description = "Reserved concurrency of the token, continue and failback functions, each."
  type        = number
  default     = 5
}

variable "idempotency_ttl_seconds" {
  description = "How long a succeeded activity call's result is kept for deduplication."
  type        = number
  default     = 604800
}

variable "token_ttl_seconds" {
  description = "How long an event wait's task token is kept (a Standard execution lives at most a year)."
  type        = number
  default     = 31622400
}

variable "require_signature" {
  description = "Refuse unsigned snapshots (RUSTYFLOWER_REQUIRE_SIGNATURE)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the functions' and the state machines' log groups."
  type        = number
  default     = 365
}

variable "state_machine_log_level" {
  description = "Step Functions execution logging: ALL, ERROR or FATAL (execution data is included)."
  type        = string
  default     = "ALL"
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the project's KMS key is deleted after a destroy."
  type        = number
  default     = 30
}

variable "access_log_bucket" {
  description = "Bucket that receives the snapshot bucket's server access logs (null: no access logs)."
  type        = string
  default     = null
}

variable "operator_principal_arns" {
  description = "Principals of other accounts (the site's watchdog) allowed to invoke the continue and failback functions."
  type        = list(string)
  default     = []
}

variable "site_id" {
  description = "The on-premises site the watchdog watches (RUSTYFLOWER_SITE_ID of the site); empty: the watchdog's schedule stays disabled."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([A-Za-z0-9][A-Za-z0-9._-]{0,62})?$", var.site_id))
    error_message = "site_id: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit."
  }
}

variable "takeover_after_seconds" {
  description = "Seconds without a renewal of the site lease before the watchdog takes the site over."
  type        = number
  default     = 300

  validation {
    condition     = var.takeover_after_seconds >= 10
    error_message = "takeover_after_seconds must be at least 10."
  }
}

variable "watchdog_schedule" {
  description = "EventBridge Scheduler expression of the watchdog."
  type        = string
  default     = "rate(1 minute)"
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}

variable "service_name_prefix" {
  description = "Prefix of the queues, buses and buckets of service tasks (null: \"<name_prefix>-\"); bucket names are global, so make it unique to the account."
  type        = string
  default     = null
}

variable "service_queue_retention_seconds" {
  description = "How long the service tasks' SQS queues keep a message."
  type        = number
  default     = 345600
}
