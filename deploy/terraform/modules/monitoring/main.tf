# Alarms and a dashboard. One runbook section per alarm: docs/runbooks/monitoring.md.
# * <name>-dlq-<code>:            a message is visible in the customer's DLQ
# * <name>-oldest-<code>:         the customer's oldest waiting message is older than a threshold
# * <name>-error-rate-<code>:     failed / (processed + failed) of the customer, from the worker's EMF
# * <name>-ses-bounce-<code>,
#   <name>-ses-complaint-<code>:  SES reputation of the customer's sending account (cross-account)

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

data "aws_region" "current" {}

resource "aws_cloudwatch_metric_alarm" "dlq_visible" {
  for_each = var.queues

  alarm_name          = "${var.name}-dlq-${each.key}"
  alarm_description   = "Messages in the DLQ of customer ${each.key}: deliveries that need an operator. Runbook: docs/runbooks/monitoring.md#dlq-message-visible"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value.dlq_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.ok_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  for_each = var.queues

  alarm_name          = "${var.name}-oldest-${each.key}"
  alarm_description   = "Triggers of customer ${each.key} wait longer than ${var.oldest_message_age_seconds} s. Runbook: docs/runbooks/monitoring.md#oldest-message-age"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = each.value.queue_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  threshold           = var.oldest_message_age_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.ok_actions
  tags                = var.tags
}

# The worker's EMF metrics carry one dimension, the customer (worker/observe.py), so the error rate is
# per customer: a failing customer alarms on its own and does not hide in a fleet-wide average.
resource "aws_cloudwatch_metric_alarm" "worker_error_rate" {
  for_each = var.queues

  alarm_name          = "${var.name}-error-rate-${each.key}"
  alarm_description   = "More than ${var.error_rate_threshold_percent}% of customer ${each.key}'s messages fail in the worker. Runbook: docs/runbooks/monitoring.md#worker-error-rate"
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  threshold           = var.error_rate_threshold_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.ok_actions

  metric_query {
    id          = "processed"
    return_data = false
    metric {
      namespace   = var.metrics_namespace
      metric_name = var.worker_processed_metric
      dimensions  = zipmap([var.worker_customer_dimension], [each.key])
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id          = "failed"
    return_data = false
    metric {
      namespace   = var.metrics_namespace
      metric_name = var.worker_failed_metric
      dimensions  = zipmap([var.worker_customer_dimension], [each.key])
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id          = "error_rate"
    label       = "Failed messages (%)"
    expression  = "IF(processed + failed > 0, 100 * failed / (processed + failed), 0)"
    return_data = true
  }

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "ses_bounce" {
  for_each = var.ses_accounts

  alarm_name          = "${var.name}-ses-bounce-${each.key}"
  alarm_description   = "SES bounce rate of customer ${each.key} above ${var.bounce_rate_threshold} (SES reviews accounts at 0.05). Runbook: docs/runbooks/monitoring.md#ses-bounce-rate"
  evaluation_periods  = 1
  threshold           = var.bounce_rate_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.ok_actions

  metric_query {
    id          = "bounce"
    account_id  = each.value
    return_data = true
    metric {
      namespace   = "AWS/SES"
      metric_name = "Reputation.BounceRate"
      stat        = "Maximum"
      period      = 3600
    }
  }

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "ses_complaint" {
  for_each = var.ses_accounts

  alarm_name          = "${var.name}-ses-complaint-${each.key}"
  alarm_description   = "SES complaint rate of customer ${each.key} above ${var.complaint_rate_threshold} (SES reviews accounts at 0.001). Runbook: docs/runbooks/monitoring.md#ses-complaint-rate"
  evaluation_periods  = 1
  threshold           = var.complaint_rate_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.ok_actions

  metric_query {
    id          = "complaint"
    account_id  = each.value
    return_data = true
    metric {
      namespace   = "AWS/SES"
      metric_name = "Reputation.ComplaintRate"
      stat        = "Maximum"
      period      = 3600
    }
  }

  tags = var.tags
}

locals {
  region = data.aws_region.current.name
  queue_search = "SEARCH('{AWS/SQS,QueueName} MetricName=\"ApproximateNumberOfMessagesVisible\" ${trimsuffix(var.queue_name_prefix, "-")}', 'Maximum', 60)"
  widgets = [
    {
      type = "metric", x = 0, y = 0, width = 12, height = 6
      properties = {
        title   = "Backlog (all customer queues) and DLQs"
        region  = local.region
        stat    = "Maximum"
        period  = 60
        metrics = [
          [var.metrics_namespace, "QueueBacklog", "Deployment", var.name],
          [var.metrics_namespace, "QueueInFlight", "Deployment", var.name],
          [var.metrics_namespace, "DlqBacklog", "Deployment", var.name],
        ]
      }
    },
    {
      type = "metric", x = 12, y = 0, width = 12, height = 6
      properties = {
        title   = "Worker messages (EMF)"
        region  = local.region
        stat    = "Sum"
        period  = 300
        metrics = [
          [{ expression = "SUM(SEARCH('{${var.metrics_namespace},${var.worker_customer_dimension}} MetricName=\"${var.worker_processed_metric}\"', 'Sum', 300))", id = "p", label = "processed" }],
          [{ expression = "SUM(SEARCH('{${var.metrics_namespace},${var.worker_customer_dimension}} MetricName=\"${var.worker_failed_metric}\"', 'Sum', 300))", id = "f", label = "failed" }],
        ]
      }
    },
    {
      type = "metric", x = 0, y = 6, width = 12, height = 6
      properties = {
        title   = "Visible messages per queue"
        region  = local.region
        metrics = [[{ expression = local.queue_search, id = "q", label = "" }]]
      }
    },
    {
      type = "alarm", x = 12, y = 6, width = 12, height = 6
      properties = {
        title  = "DLQ alarms"
        alarms = [for a in aws_cloudwatch_metric_alarm.dlq_visible : a.arn]
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({ widgets = local.widgets })
}
