# One SQS queue and one dead-letter queue per customer, exactly as `changeconsole provision` creates
# them (services/provision.py: queue_spec): names changeconsole-{code} and changeconsole-{code}-dlq,
# RedrivePolicy maxReceiveCount 3 + 50 (a backstop: the worker counts failures and receives without an outcome itself), SQS-managed SSE, visibility 120 s, long polling 20 s, retention 4 days
# on the queue and 14 days on the DLQ. tests/test_deploy.py checks the two stay identical.

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

locals {
  codes = toset(var.customers)
}

resource "aws_sqs_queue" "dlq" {
  for_each = local.codes

  name                      = "${var.name_prefix}${each.key}${var.dlq_suffix}"
  message_retention_seconds = var.dlq_message_retention_seconds
  sqs_managed_sse_enabled   = true

  tags = merge(var.tags, {
    "changeconsole:customer" = each.key
    "changeconsole:role"     = "dlq"
  })
}

resource "aws_sqs_queue" "queue" {
  for_each = local.codes

  name                       = "${var.name_prefix}${each.key}"
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = var.receive_wait_time_seconds
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = var.max_receive_count + var.max_receives_without_outcome
  })

  tags = merge(var.tags, {
    "changeconsole:customer" = each.key
    "changeconsole:role"     = "trigger"
  })
}
