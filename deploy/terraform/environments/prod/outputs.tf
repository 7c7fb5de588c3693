output "worker_role_arn" {
  value = module.changeconsole.worker_role_arn
}

output "bucket_name" {
  value = module.changeconsole.bucket_name
}

output "queue_names" {
  value = module.changeconsole.queue_names
}

output "dlq_names" {
  value = module.changeconsole.dlq_names
}

output "config_customer_mappings" {
  description = "terraform output -json config_customer_mappings: the customer_mappings of config.json."
  value       = module.changeconsole.config_customer_mappings
}

output "customer_side" {
  description = "Per customer: the inputs of deploy/terraform/customer-account."
  value       = module.changeconsole.customer_side
}

output "ecs_service_name" {
  value = module.changeconsole.ecs_service_name
}

output "ecs_service_names" {
  value = module.changeconsole.ecs_service_names
}

output "dashboard_name" {
  value = module.changeconsole.dashboard_name
}
