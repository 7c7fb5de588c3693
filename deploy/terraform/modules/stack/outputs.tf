output "worker_role_arn" {
  description = "Trusted by every customer's SES role (customer_ses_role worker_role_arn) and by IRSA."
  value       = module.worker_iam.role_arn
}

output "bucket_name" {
  value = module.metadata_bucket.bucket_name
}

output "status_table_name" {
  value = module.tables.status_table_name
}

output "ledger_table_name" {
  value = module.tables.ledger_table_name
}

output "queue_names" {
  value = { for code, c in module.customer : code => c.queue_name }
}

output "dlq_names" {
  value = { for code, c in module.customer : code => c.dlq_name }
}

output "notification_ids" {
  value = module.metadata_bucket.notification_ids
}

output "config_customer_mappings" {
  description = "config.json customer_mappings, derived from the same inputs as the resources."
  value       = { for code, c in module.customer : code => c.config_mapping }
}

output "customer_side" {
  description = "Per customer: inputs of modules/customer_ses_role in the customer's account."
  value = { for code, c in module.customer : code => merge(c.customer_side, {
    worker_role_arn        = module.worker_iam.role_arn
    events_topic_arn       = module.ses_events.topic_arn
    configuration_set_name = var.configuration_set_name
  }) }
}

output "ecs_service_name" {
  value = length(module.ecs_worker) > 0 ? module.ecs_worker[0].service_name : null
}

output "ecs_service_names" {
  description = "Shard (\"K/N\", or \"all\") => ECS service."
  value       = length(module.ecs_worker) > 0 ? module.ecs_worker[0].service_names : {}
}

output "dashboard_name" {
  value = module.monitoring.dashboard_name
}

output "operator_permission_sets" {
  description = "Operator role => its Identity Center permission set (config.json operator_roles principals)."
  value       = length(module.operator_access) > 0 ? module.operator_access[0].permission_sets : {}
}
