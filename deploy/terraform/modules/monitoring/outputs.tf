output "alarm_names" {
  value = concat(
    [for a in aws_cloudwatch_metric_alarm.dlq_visible : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.oldest_message : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.worker_error_rate : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.ses_bounce : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.ses_complaint : a.alarm_name],
  )
}

output "dashboard_name" {
  value = aws_cloudwatch_dashboard.this.dashboard_name
}
