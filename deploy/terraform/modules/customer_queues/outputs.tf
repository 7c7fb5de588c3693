output "queue_arns" {
  description = "Customer code => queue ARN."
  value       = { for code, q in aws_sqs_queue.queue : code => q.arn }
}

output "queue_urls" {
  description = "Customer code => queue URL."
  value       = { for code, q in aws_sqs_queue.queue : code => q.id }
}

output "queue_names" {
  description = "Customer code => queue name."
  value       = { for code, q in aws_sqs_queue.queue : code => q.name }
}

output "dlq_arns" {
  description = "Customer code => DLQ ARN."
  value       = { for code, q in aws_sqs_queue.dlq : code => q.arn }
}

output "dlq_names" {
  description = "Customer code => DLQ name."
  value       = { for code, q in aws_sqs_queue.dlq : code => q.name }
}
