output "service_name" {
  value = aws_ecs_service.worker.name
}

output "cluster_name" {
  value = local.cluster_name
}

output "task_definition_arn" {
  value = aws_ecs_task_definition.worker.arn
}

output "log_group_name" {
  value = aws_cloudwatch_log_group.worker.name
}
