output "metric" {
  description = "The backlog metric: namespace, name and dimensions."
  value = {
    namespace  = var.metrics_namespace
    name       = "QueueBacklog"
    dimensions = { Deployment = var.name }
  }
}

output "shard_metrics" {
  description = "Per shard (\"K/N\" => metric): its own queues' backlog; empty when not sharded."
  value = var.shard_count > 1 ? {
    for k in range(var.shard_count) : "${k}/${var.shard_count}" => {
      namespace  = var.metrics_namespace
      name       = "QueueBacklog"
      dimensions = { Deployment = var.name, Shard = "${k}/${var.shard_count}" }
    }
  } : {}
}

output "function_name" {
  value = aws_lambda_function.publisher.function_name
}
