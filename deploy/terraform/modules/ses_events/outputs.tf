output "topic_arn" {
  description = "The customer side's events_topic_arn (its configuration set's event destination)."
  value       = aws_sns_topic.events.arn
}

output "queue_arn" {
  value = aws_sqs_queue.events.arn
}
