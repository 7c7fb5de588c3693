# Inputs of modules/stack; values in terraform.tfvars. Same file in every environment.

variable "environment" {
  type = string
}

variable "aws_region" {
  type = string
}

variable "central_account_id" {
  type = string
}

variable "bucket_name" {
  type = string
}

variable "transport" {
  type    = string
  default = "s3-events"
}

variable "customers" {
  description = "Customer code => customer (see modules/stack variable customers)."
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
}

variable "max_receive_count" {
  type    = number
  default = 3
}

variable "status_table_name" {
  type    = string
  default = "changeconsole-status"
}

variable "ledger_table_name" {
  type    = string
  default = "changeconsole-ledger"
}

variable "metrics_namespace" {
  type    = string
  default = "ChangeConsole"
}

variable "ecs" {
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

variable "eks_oidc_provider_arn" {
  type    = string
  default = ""
}

variable "alarm_topic_arns" {
  type    = list(string)
  default = []
}

variable "ses_reputation_alarms" {
  type    = bool
  default = false
}

variable "operator_access" {
  description = "Operator roles as Identity Center permission sets (see modules/stack variable operator_access)."
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
  description = "config.json audit_retention (see modules/stack)."
  type = object({
    transition_days          = optional(number, 90)
    transition_storage_class = optional(string, "GLACIER_IR")
    expire_days              = optional(number)
    object_lock_mode         = optional(string)
    object_lock_days         = optional(number)
  })
  default = {}
}

variable "worker_shards" {
  description = "Worker shards N (worker --shard K/N); see modules/stack."
  type        = number
  default     = 1
}
