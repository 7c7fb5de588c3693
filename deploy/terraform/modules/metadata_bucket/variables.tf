variable "bucket_name" {
  description = "config.json s3_config.bucket_name."
  type        = string
}

variable "customer_queues" {
  description = "Customer code => its trigger queue (customer_onboarding output `queue`)."
  type = map(object({
    queue_arn = string
    queue_url = string
  }))
}

variable "enable_notifications" {
  description = "false for config transport \"sqs-direct\" (no S3 events; provision.plan makes none)."
  type        = bool
  default     = true
}

variable "notification_id_prefix" {
  description = "Notification ids are <prefix><code> (provision.notification_id); provision only manages ids with this prefix."
  type        = string
  default     = "changeconsole-"
}

variable "trigger_prefix" {
  description = "Key prefix of triggers; the customer's filter is <prefix><code>/ (provision.trigger_prefix)."
  type        = string
  default     = "customers/"
}

variable "trigger_suffix" {
  description = "provision.TRIGGER_SUFFIX."
  type        = string
  default     = ".json"
}

variable "events" {
  description = "S3 events that trigger a delivery."
  type        = list(string)
  default     = ["s3:ObjectCreated:*"]
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for default encryption; empty for SSE-S3 (AES256, what provision sets)."
  type        = string
  default     = ""
}

variable "transient_noncurrent_days" {
  description = "Days to keep superseded versions of triggers and payloads."
  type        = number
  default     = 30
}

variable "history_noncurrent_days" {
  description = "Days to keep superseded versions of everything else (restore window of disaster-recovery.md)."
  type        = number
  default     = 365
}

variable "audit_transition_days" {
  description = "config.json audit_retention.transition_days: audit/ objects move to the storage class after N days (null: never)."
  type        = number
  default     = 90
}

variable "audit_transition_storage_class" {
  description = "config.json audit_retention.transition_storage_class."
  type        = string
  default     = "GLACIER_IR"
}

variable "audit_expire_days" {
  description = "config.json audit_retention.expire_days: audit/ objects are deleted after N days (null: kept)."
  type        = number
  default     = null
}

variable "audit_object_lock" {
  description = "config.json audit_retention.object_lock_mode is set: Object Lock on the bucket (irreversible)."
  type        = bool
  default     = false
}

variable "tags" {
  type    = map(string)
  default = {}
}
