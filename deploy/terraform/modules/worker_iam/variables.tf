variable "role_name" {
  type = string
}

variable "bucket_arn" {
  description = "The metadata bucket."
  type        = string
}

variable "queue_arn_pattern" {
  description = "ARN pattern of the customer queues (and so their DLQs), e.g. arn:aws:sqs:eu-west-1:111111111111:changeconsole-*."
  type        = string
}

variable "dlq_arn_pattern" {
  description = "ARN pattern of the DLQs only (denied to receive/delete), e.g. arn:aws:sqs:eu-west-1:111111111111:changeconsole-*-dlq."
  type        = string
}

variable "table_arns" {
  description = "Status and ledger tables."
  type        = list(string)
}

variable "ses_role_arns" {
  description = "Customer SES roles the worker may assume (config.json ses_role_arn of every customer)."
  type        = list(string)
}

variable "ses_roles_per_policy" {
  description = "Role ARNs per managed policy (6,144-character limit)."
  type        = number
  default     = 80
}

variable "metrics_namespace" {
  description = "config.json metrics.namespace: the only namespace PutMetricData may write."
  type        = string
  default     = "ChangeConsole"
}

variable "kms_key_arns" {
  description = "Customer-managed keys of the bucket/tables, if any."
  type        = list(string)
  default     = []
}

variable "trust_ecs_tasks" {
  type    = bool
  default = true
}

variable "eks_oidc_provider_arn" {
  description = "IAM OIDC provider of the EKS cluster (IRSA); empty for none."
  type        = string
  default     = ""
}

variable "eks_namespace" {
  type    = string
  default = "changeconsole"
}

variable "eks_service_account" {
  type    = string
  default = "changeconsole-worker"
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "events_queue_arn" {
  description = "The central SES events queue (modules/ses_events)."
  type        = string
}

variable "doorbell_queue_arns" {
  description = "The doorbell queues (one per worker shard; transport sqs-direct), empty for none."
  type        = list(string)
  default     = []
}
