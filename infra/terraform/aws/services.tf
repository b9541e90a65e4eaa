# The resources of the flows' service tasks (docs/services.md): the SQS queues of
# queue.send, the EventBridge buses of event.publish, the S3 buckets of object.put and
# object.get. Their names come from the flows (the "services" of each entry of var.flows,
# written by `python -m lambda_aws.asl`), each with var.service_name_prefix in front: the
# machines were compiled with the same prefix (the ${service_prefix} placeholder), so a
# task's "queue: orders" is the queue "<prefix>orders" here.

locals {
  service_prefix = coalesce(var.service_name_prefix, "${var.name_prefix}-")
  service_queues = toset(flatten([for flow in values(var.flows) : flow.services.queues]))
  service_buses  = toset(flatten([for flow in values(var.flows) : flow.services.buses]))
  # (a trigger's queue or bus is listed in its flow's services too: lambda_aws.asl)
  service_stores = toset(flatten([for flow in values(var.flows) : flow.services.stores]))

  service_queue_url_base = "https://sqs.${local.region}.amazonaws.com/${local.account}/"
  service_queue_arns     = [for name in local.service_queues : "arn:${local.partition}:sqs:${local.region}:${local.account}:${local.service_prefix}${name}"]
  service_bus_arns       = [for name in local.service_buses : "arn:${local.partition}:events:${local.region}:${local.account}:event-bus/${local.service_prefix}${name}"]
  service_bucket_arns    = [for name in local.service_stores : "arn:${local.partition}:s3:::${local.service_prefix}${name}"]
}

resource "aws_sqs_queue" "services" {
  for_each                  = local.service_queues
  name                      = "${local.service_prefix}${each.key}"
  kms_master_key_id         = aws_kms_key.main.arn
  message_retention_seconds = var.service_queue_retention_seconds
}

resource "aws_cloudwatch_event_bus" "services" {
  for_each = local.service_buses
  name     = "${local.service_prefix}${each.key}"
}

resource "aws_s3_bucket" "services" {
  #checkov:skip=CKV_AWS_144:a flow's store lives in the flow's region; replication is a choice of the deployment (add it around this module)
  #checkov:skip=CKV2_AWS_62:the flows read what they wrote; nothing reacts to new objects unless a trigger is declared for it
  for_each      = local.service_stores
  bucket        = "${local.service_prefix}${each.key}"
  force_destroy = false
}

resource "aws_s3_bucket_ownership_controls" "services" {
  for_each = aws_s3_bucket.services
  bucket   = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "services" {
  for_each                = aws_s3_bucket.services
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "services" {
  for_each = aws_s3_bucket.services
  bucket   = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "services" {
  for_each = aws_s3_bucket.services
  bucket   = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "services" {
  for_each = aws_s3_bucket.services
  bucket   = each.value.id

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

  depends_on = [aws_s3_bucket_versioning.services]
}

resource "aws_s3_bucket_logging" "services" {
  for_each      = var.access_log_bucket == null ? {} : aws_s3_bucket.services
  bucket        = each.value.id
  target_bucket = var.access_log_bucket
  target_prefix = "${each.value.id}/"
}

data "aws_iam_policy_document" "services_bucket" {
  for_each = aws_s3_bucket.services

  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value.arn, "${each.value.arn}/*"]
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
}

resource "aws_s3_bucket_policy" "services" {
  for_each = aws_s3_bucket.services
  bucket   = each.value.id
  policy   = data.aws_iam_policy_document.services_bucket[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.services]
}

# What the state machines may do with them (their integrations call the services as the
# machines' role; http.call runs in the activity function, which needs nothing here).
data "aws_iam_policy_document" "services" {
  statement {
    sid       = "SendMessages"
    actions   = ["sqs:SendMessage"]
    resources = length(local.service_queue_arns) > 0 ? local.service_queue_arns : ["arn:${local.partition}:sqs:${local.region}:${local.account}:${local.service_prefix}none"]
  }

  statement {
    sid       = "PublishEvents"
    actions   = ["events:PutEvents"]
    resources = length(local.service_bus_arns) > 0 ? local.service_bus_arns : ["arn:${local.partition}:events:${local.region}:${local.account}:event-bus/${local.service_prefix}none"]
  }

  statement {
    sid       = "PutAndGetObjects"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = length(local.service_bucket_arns) > 0 ? [for arn in local.service_bucket_arns : "${arn}/*"] : ["arn:${local.partition}:s3:::${local.service_prefix}none/*"]
  }
}

resource "aws_iam_role_policy" "states_services" {
  name   = "rustyflower-states-services"
  role   = aws_iam_role.states.id
  policy = data.aws_iam_policy_document.services.json
}
