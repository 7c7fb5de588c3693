output "queue" {
  description = "Notification entry for metadata_bucket: where this customer's triggers go."
  value = {
    queue_arn = module.queues.queue_arns[var.code]
    queue_url = module.queues.queue_urls[var.code]
  }
}

output "queue_name" {
  value = module.queues.queue_names[var.code]
}

output "dlq_name" {
  value = module.queues.dlq_names[var.code]
}

output "dlq_arn" {
  value = module.queues.dlq_arns[var.code]
}

output "ses_role_arn" {
  description = "For worker_iam: the one role of this customer the worker may assume."
  value       = local.ses_role_arn
}

output "customer_side" {
  description = "Inputs of modules/customer_ses_role in the customer's account."
  value = {
    customer_code = var.code
    account_id    = var.customer.account_id
    role_name     = var.customer.ses_role_name
    external_id  = var.customer.external_id
    ses_region   = var.customer.ses_region
    ses_identity = var.customer.ses_identity
  }
}

output "config_mapping" {
  description = "This customer's config.json customer_mappings entry."
  value = {
    customer_code         = var.code
    customer_name         = var.customer.name
    environment           = var.customer.environment
    region                = var.customer.ses_region
    ses_role_arn          = local.ses_role_arn
    ses_external_id       = var.customer.external_id
    sqs_queue_arn         = module.queues.queue_arns[var.code]
    restricted_recipients = var.customer.restricted_recipients
  }
}
