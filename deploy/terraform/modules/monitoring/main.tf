# Alarms and a dashboard. One runbook section per alarm: docs/runbooks/monitoring.md.
# * <name>-dlq-<code>:            a message is visible in the customer's DLQ
# * <name>-oldest-<code>:         the customer's oldest waiting message is older than a threshold
# * <name>-error-rate-<code>:     failed / (processed + failed) of the customer, from the worker's EMF
# * <name>-ses-bounce-<code>,
#   <name>-ses-complaint-<code>:  SES reputation of the customer's sending account (cross-account)
# * <name>-events-bounce-<code>,
#   <name>-events-complaint-<code>: the customer's rates from the SES events the worker applied (BounceRate,
#                                  ComplaintRate in %, worker/events.py), against SES's warning levels

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

locals {
  # The SQS alarms, keyed by the alarm name's suffix (<kind>-<code>).
  queue_alarms = merge([
    for code, q in var.queues : {
      "dlq-${code}" = {
        description         = "Messages in the DLQ of customer ${code}: deliveries that need an operator. Runbook: docs/runbooks/monitoring.md#dlq-message-visible"
        metric_name         = "ApproximateNumberOfMessagesVisible"
        queue_name          = q.dlq_name
        evaluation_periods  = 1
        datapoints_to_alarm = null
        threshold           = 0
      }
      "oldest-${code}" = {
        description         = "Triggers of customer ${code} wait longer than ${var.oldest_message_age_seconds} s. Runbook: docs/runbooks/monitoring.md#oldest-message-age"
        metric_name         = "ApproximateAgeOfOldestMessage"
        queue_name          = q.queue_name
        evaluation_periods  = 5
        datapoints_to_alarm = 3
        threshold           = var.oldest_message_age_seconds
      }
    }
  ]...)

  # The SES reputation alarms, keyed the same way (ses-<kind>-<code>).
  ses_alarms = merge([
    for code, account_id in var.ses_accounts : {
      "ses-bounce-${code}" = {
        description = "SES bounce rate of customer ${code} above ${var.bounce_rate_threshold} (SES reviews accounts at 0.05). Runbook: docs/runbooks/monitoring.md#ses-bounce-rate"
        query_id    = "bounce"
        metric_name = "Reputation.BounceRate"
        threshold   = var.bounce_rate_threshold
        account_id  = account_id
      }
      "ses-complaint-${code}" = {
        description = "SES complaint rate of customer ${code} above ${var.complaint_rate_threshold} (SES reviews accounts at 0.001). Runbook: docs/runbooks/monitoring.md#ses-complaint-rate"
        query_id    = "complaint"
        metric_name = "Reputation.ComplaintRate"
        threshold   = var.complaint_rate_threshold
        account_id  = account_id
      }
    }
  ]...)
}

resource "aws_cloudwatch_metric_alarm" "queue" {
  for_each = local.queue_alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/SQS"
  metric_name         = each.value.metric_name
  dimensions          = { QueueName = each.value.queue_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = each.value.evaluation_periods
  datapoints_to_alarm = each.value.datapoints_to_alarm
  threshold           = each.value.threshold
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

  dynamic "metric_query" {
    for_each = { processed = var.worker_processed_metric, failed = var.worker_failed_metric }
    content {
      id          = metric_query.key
      return_data = false
      metric {
        namespace   = var.metrics_namespace
        metric_name = metric_query.value
        dimensions  = zipmap([var.worker_customer_dimension], [each.key])
        stat        = "Sum"
        period      = 300
      }
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

# The worker's own view of each customer's reputation: hard bounces and complaints over sends, from the
# SES events it applied (percent; SES warns at 5 % bounces and 0.1 % complaints).
resource "aws_cloudwatch_metric_alarm" "event_rates" {
  for_each = merge([
    for code, q in var.queues : {
      "events-bounce-${code}"    = { code = code, metric = "BounceRate", threshold = var.events_bounce_rate_percent, anchor = "ses-bounce-rate" }
      "events-complaint-${code}" = { code = code, metric = "ComplaintRate", threshold = var.events_complaint_rate_percent, anchor = "ses-complaint-rate" }
    }
  ]...)

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = "${each.value.metric} of customer ${each.value.code} from its SES events at or above ${each.value.threshold}%. Runbook: docs/runbooks/monitoring.md#${each.value.anchor}"
  namespace           = var.metrics_namespace
  metric_name         = each.value.metric
  dimensions          = zipmap([var.worker_customer_dimension], [each.value.code])
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.ok_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "ses_reputation" {
  for_each = local.ses_alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  evaluation_periods  = 1
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.ok_actions

  metric_query {
    id          = each.value.query_id
    account_id  = each.value.account_id
    return_data = true
    metric {
      namespace   = "AWS/SES"
      metric_name = each.value.metric_name
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
        alarms = [for k, a in aws_cloudwatch_metric_alarm.queue : a.arn if startswith(k, "dlq-")]
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({ widgets = local.widgets })
}
