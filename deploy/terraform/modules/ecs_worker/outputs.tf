output "service_name" {
  description = "The service (sharded: shard 0's; see service_names)."
  value       = aws_ecs_service.worker[keys(local.shards)[0]].name
}

output "service_names" {
  description = "Shard (\"K/N\", or \"all\") => its service."
  value       = { for key, shard in local.shards : (shard == "" ? "all" : shard) => aws_ecs_service.worker[key].name }
}

output "cluster_name" {
  value = local.cluster_name
}

output "task_definition_arn" {
  value = aws_ecs_task_definition.worker[keys(local.shards)[0]].arn
}

output "log_group_name" {
  value = aws_cloudwatch_log_group.worker.name
}
