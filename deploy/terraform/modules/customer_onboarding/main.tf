# Everything the central account needs for ONE customer, derived from the same per-customer inputs that
# config.json holds:
# * its queue and DLQ (customer_queues);
# * its notification entry (output `queue`, consumed by metadata_bucket, which adds the S3 event
#   notification changeconsole-{code} and the queue policy);
# * its IAM: the SES role ARN the worker may assume (output `ses_role_arn`, consumed by worker_iam) and
#   the inputs of the customer-side role (output `customer_side`, for modules/customer_ses_role);
# * its config.json entry (output `config_mapping`).
# The customer's own account gets modules/customer_ses_role (deploy/terraform/customer-account).

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

locals {
  ses_role_arn = "arn:${var.partition}:iam::${var.customer.account_id}:role/${var.customer.ses_role_name}"
}

module "queues" {
  source = "../customer_queues"

  customers                     = [var.code]
  name_prefix                   = var.queue_name_prefix
  max_receive_count             = var.max_receive_count
  visibility_timeout_seconds    = var.visibility_timeout_seconds
  receive_wait_time_seconds     = var.receive_wait_time_seconds
  message_retention_seconds     = var.message_retention_seconds
  dlq_message_retention_seconds = var.dlq_message_retention_seconds
  tags                          = var.tags
}
