output "metric" {
  description = "The backlog metric: namespace, name and dimensions."
  value = {
    namespace  = var.metrics_namespace
    name       = "QueueBacklog"
    dimensions = { Deployment = var.name }
  }
}

output "function_name" {
  value = aws_lambda_function.publisher.function_name
}
