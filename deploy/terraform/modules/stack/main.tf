# One changeconsole environment in its central account: the composition every example environment
# (deploy/terraform/environments/*) instantiates with its terraform.tfvars.

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
  name              = "changeconsole-${var.environment}"
  queue_arn_pattern = "arn:${var.partition}:sqs:${var.aws_region}:${var.central_account_id}:${var.queue_name_prefix}*"
  dlq_arn_pattern   = "arn:${var.partition}:sqs:${var.aws_region}:${var.central_account_id}:${var.queue_name_prefix}*-dlq"
  tags              = merge(var.tags, { "changeconsole:environment" = var.environment })
  # sqs-direct: a ring per trigger tells shard K's workers which customer queue to long-poll.
  doorbell_queues = var.transport == "sqs-direct" && var.doorbell_enabled ? {
    for k in range(var.worker_shards) : tostring(k) => "${var.doorbell_queue_prefix}-${k}-of-${var.worker_shards}"
  } : {}
}

# Rings carry no work: kept an hour, back after 30 s when a worker stopped before deleting them
# (services/provision.py doorbell_attributes).
resource "aws_sqs_queue" "doorbell" {
  for_each                   = local.doorbell_queues
  name                       = each.value
  message_retention_seconds  = 3600
  visibility_timeout_seconds = 30
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  tags                       = local.tags
}

module "customer" {
  source   = "../customer_onboarding"
  for_each = var.customers

  code                          = each.key
  customer                      = each.value
  partition                     = var.partition
  queue_name_prefix             = var.queue_name_prefix
  max_receive_count             = var.max_receive_count
  visibility_timeout_seconds    = var.visibility_timeout_seconds
  receive_wait_time_seconds     = var.receive_wait_time_seconds
  message_retention_seconds     = var.message_retention_seconds
  dlq_message_retention_seconds = var.dlq_message_retention_seconds
  tags                          = local.tags
}

module "metadata_bucket" {
  source = "../metadata_bucket"

  bucket_name          = var.bucket_name
  customer_queues      = { for code, c in module.customer : code => c.queue }
  enable_notifications = var.transport == "s3-events"
  kms_key_arn          = var.kms_key_arn

  audit_transition_days          = var.audit_retention.transition_days
  audit_transition_storage_class = var.audit_retention.transition_storage_class
  audit_expire_days              = var.audit_retention.expire_days
  audit_object_lock              = var.audit_retention.object_lock_mode != null

  tags = local.tags
}

module "tables" {
  source = "../tables"

  status_table_name = var.status_table_name
  ledger_table_name = var.ledger_table_name
  kms_key_arn       = var.kms_key_arn
  tags              = local.tags
}

module "ses_events" {
  source = "../ses_events"

  topic_name           = var.events_topic_name
  queue_name           = var.events_queue_name
  customer_account_ids = sort(distinct([for code, c in var.customers : c.account_id]))
  kms_key_arn          = var.kms_key_arn
  tags                 = local.tags
}

module "worker_iam" {
  source = "../worker_iam"

  role_name             = "${local.name}-worker"
  bucket_arn            = module.metadata_bucket.bucket_arn
  queue_arn_pattern     = local.queue_arn_pattern
  dlq_arn_pattern       = local.dlq_arn_pattern
  table_arns            = [module.tables.status_table_arn, module.tables.ledger_table_arn]
  ses_role_arns         = [for code, c in module.customer : c.ses_role_arn]
  metrics_namespace     = var.metrics_namespace
  events_queue_arn      = module.ses_events.queue_arn
  doorbell_queue_arns   = [for q in aws_sqs_queue.doorbell : q.arn]
  kms_key_arns          = var.kms_key_arn == "" ? [] : [var.kms_key_arn]
  # ECS when the stack runs the worker there, or when nothing else is trusted (a role needs a principal).
  trust_ecs_tasks       = var.ecs != null || var.eks_oidc_provider_arn == ""
  eks_oidc_provider_arn = var.eks_oidc_provider_arn
  tags                  = local.tags
}

module "backlog_publisher" {
  source = "../backlog_publisher"

  name              = local.name
  queue_name_prefix = var.queue_name_prefix
  queue_arn_pattern = local.queue_arn_pattern
  metrics_namespace = var.metrics_namespace
  shard_count       = var.worker_shards
  tags              = local.tags
}

module "ecs_worker" {
  source = "../ecs_worker"
  count  = var.ecs == null ? 0 : 1

  name                     = local.name
  image                    = var.ecs.image
  task_role_arn            = module.worker_iam.role_arn
  config_ssm_parameter_arn = var.ecs.config_ssm_parameter_arn
  vpc_id                   = var.ecs.vpc_id
  subnet_ids               = var.ecs.subnet_ids
  min_tasks                = var.ecs.min_tasks
  max_tasks                = var.ecs.max_tasks
  backlog_metric           = module.backlog_publisher.metric
  shard_count              = var.worker_shards
  partition                = var.partition
  tags                     = local.tags
}

module "monitoring" {
  source = "../monitoring"

  name              = local.name
  queues            = { for code, c in module.customer : code => { queue_name = c.queue_name, dlq_name = c.dlq_name } }
  queue_name_prefix = var.queue_name_prefix
  metrics_namespace = var.metrics_namespace
  alarm_actions     = var.alarm_topic_arns
  ok_actions        = var.alarm_topic_arns
  ses_accounts      = { for code, c in var.customers : code => c.account_id if var.ses_reputation_alarms }
  tags              = local.tags
}

module "operator_access" {
  source = "../operator_access"
  count  = var.operator_access == null ? 0 : 1

  name              = local.name
  instance_arn      = var.operator_access.instance_arn
  identity_store_id = var.operator_access.identity_store_id
  account_id        = var.central_account_id
  partition         = var.partition
  region            = var.aws_region
  bucket_arn        = module.metadata_bucket.bucket_arn
  status_table_arn  = module.tables.status_table_arn
  ledger_table_arn  = module.tables.ledger_table_arn
  queue_name_prefix = var.queue_name_prefix
  doorbell_queue_arns = [for q in aws_sqs_queue.doorbell : q.arn]
  customer_roles    = { for code, c in module.customer : code => c.ses_role_arn }
  roles             = var.operator_access.roles
  abac_attributes   = var.operator_access.abac_attributes
  tags              = local.tags
}
