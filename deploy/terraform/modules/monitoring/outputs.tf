output "alarm_names" {
  value = concat(
    [for a in aws_cloudwatch_metric_alarm.queue : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.worker_error_rate : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.ses_reputation : a.alarm_name],
  )
}

output "dashboard_name" {
  value = aws_cloudwatch_dashboard.this.dashboard_name
}
