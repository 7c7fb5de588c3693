variable "environment" {
  description = "dev, staging, prod, ...: names are changeconsole-<environment>-*."
  type        = string
}

variable "aws_region" {
  description = "config.json aws_region: region of the bucket, queues and tables."
  type        = string
}

variable "central_account_id" {
  description = "The central account (bucket, queues, tables, worker)."
  type        = string
}

variable "partition" {
  type    = string
  default = "aws"
}

variable "bucket_name" {
  description = "config.json s3_config.bucket_name."
  type        = string
}

variable "transport" {
  description = "config.json transport: s3-events or sqs-direct."
  type        = string
  default     = "s3-events"

  validation {
    condition     = contains(["s3-events", "sqs-direct"], var.transport)
    error_message = "transport is s3-events or sqs-direct."
  }
}

variable "customers" {
  description = "Customer code => customer; config.json customer_mappings is derived from the same entries."
  type = map(object({
    name                  = string
    account_id            = string
    ses_region            = string
    external_id           = string
    environment           = optional(string, "production")
    ses_role_name         = optional(string, "changeconsole-ses-sender")
    ses_identity          = optional(string, "")
    restricted_recipients = optional(list(string), [])
  }))

  validation {
    condition     = alltrue([for code in keys(var.customers) : can(regex("^[a-z0-9-]{2,50}$", code))])
    error_message = "Customer codes match ^[a-z0-9-]{2,50}$."
  }
}

variable "queue_name_prefix" {
  description = "Queue names are <prefix><code>; also scopes the worker's IAM, the backlog metric and the dashboard."
  type        = string
  default     = "changeconsole-"
}

variable "max_receive_count" {
  description = "config.json max_receive_count; null = the customer_queues default (3)."
  type        = number
  default     = null
}

variable "visibility_timeout_seconds" {
  description = "null = the customer_queues default (the value provision uses)."
  type        = number
  default     = null
}

variable "receive_wait_time_seconds" {
  description = "null = the customer_queues default (the value provision uses)."
  type        = number
  default     = null
}

variable "message_retention_seconds" {
  description = "null = the customer_queues default (the value provision uses)."
  type        = number
  default     = null
}

variable "dlq_message_retention_seconds" {
  description = "null = the customer_queues default (the value provision uses)."
  type        = number
  default     = null
}

variable "status_table_name" {
  description = "config.json status_table_name."
  type        = string
  default     = "changeconsole-status"
}

variable "ledger_table_name" {
  description = "config.json ledger_table_name."
  type        = string
  default     = "changeconsole-ledger"
}

variable "metrics_namespace" {
  description = "config.json metrics.namespace."
  type        = string
  default     = "ChangeConsole"
}

variable "kms_key_arn" {
  type    = string
  default = ""
}

variable "ecs" {
  description = "Run the worker on ECS Fargate (null: the worker runs elsewhere, e.g. EKS with deploy/k8s)."
  type = object({
    image                    = string
    config_ssm_parameter_arn = string
    vpc_id                   = string
    subnet_ids               = list(string)
    min_tasks                = optional(number, 2)
    max_tasks                = optional(number, 20)
  })
  default = null
}

variable "worker_shards" {
  description = "Worker shards N (worker --shard K/N, customers by a stable hash of their code): ECS runs one service per shard, and the backlog publisher publishes each shard's backlog for its autoscaling (ECS or KEDA). 1: not sharded."
  type        = number
  default     = 1
}

variable "eks_oidc_provider_arn" {
  description = "IRSA: the EKS cluster's IAM OIDC provider, trusted for the changeconsole-worker service account."
  type        = string
  default     = ""
}

variable "alarm_topic_arns" {
  type    = list(string)
  default = []
}

variable "ses_reputation_alarms" {
  description = "Alarm on each customer account's SES reputation (needs CloudWatch cross-account observability)."
  type        = bool
  default     = false
}

variable "operator_access" {
  description = "config.json operator_roles as Identity Center permission sets (modules/operator_access); null: operators' access is managed elsewhere."
  type = object({
    instance_arn      = string
    identity_store_id = string
    roles = map(object({
      permission_set   = string
      actions          = optional(list(string), [])
      customers        = optional(list(string))
      customer_tag     = optional(string)
      groups           = optional(list(string), [])
      session_duration = optional(string, "PT8H")
    }))
    abac_attributes = optional(map(string), {})
  })
  default = null
}

variable "audit_retention" {
  description = "config.json audit_retention: the audit/ lifecycle rule and Object Lock (modules/metadata_bucket)."
  type = object({
    transition_days          = optional(number, 90)
    transition_storage_class = optional(string, "GLACIER_IR")
    expire_days              = optional(number)
    object_lock_mode         = optional(string)
    object_lock_days         = optional(number)
  })
  default = {}
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "events_topic_name" {
  description = "config.json events.topic_name."
  type        = string
  default     = "changeconsole-ses-events"
}

variable "events_queue_name" {
  description = "config.json events.queue_name."
  type        = string
  default     = "changeconsole-ses-events"
}

variable "configuration_set_name" {
  description = "config.json events.configuration_set (created in each customer's account)."
  type        = string
  default     = "changeconsole"
}

variable "doorbell_enabled" {
  description = "config.json doorbell.enabled: with transport sqs-direct, one doorbell queue per worker shard (workers long-poll only the customer queues that were rung)."
  type        = bool
  default     = true
}

variable "doorbell_queue_prefix" {
  description = "config.json doorbell.queue_prefix: shard K of N rings <prefix>-<K>-of-<N>."
  type        = string
  default     = "changeconsole-doorbell"
}
