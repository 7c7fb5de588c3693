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

variable "status_gsis" {
  description = "GSIs of the status table (provision.STATUS_GSI_CHANGES, STATUS_GSI_CUSTOMER, STATUS_GSI_CHANGED)."
  type        = list(string)
  default     = ["gsi1", "gsi2", "gsi3"]
}

variable "ledger_ttl_attribute" {
  description = "provision.LEDGER_TTL_ATTRIBUTE."
  type        = string
  default     = "expires_at"
}

variable "point_in_time_recovery" {
  description = "Continuous backups (35-day restore window); see docs/runbooks/disaster-recovery.md."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  type    = bool
  default = true
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key; empty for the AWS-owned key."
  type        = string
  default     = ""
}

variable "tags" {
  type    = map(string)
  default = {}
}
