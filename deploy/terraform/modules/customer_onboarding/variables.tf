variable "code" {
  description = "Customer code: config.json customer_mappings key."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{2,50}$", var.code))
    error_message = "Customer codes match ^[a-z0-9-]{2,50}$."
  }
}

variable "customer" {
  description = "The customer's entry of terraform.tfvars `customers`."
  type = object({
    name                  = string
    account_id            = string
    ses_region            = string
    external_id           = string
    environment           = optional(string, "production")
    ses_role_name         = optional(string, "changeconsole-ses-sender")
    ses_identity          = optional(string, "")
    restricted_recipients = optional(list(string), [])
  })

  validation {
    condition     = can(regex("^[0-9]{12}$", var.customer.account_id))
    error_message = "account_id is the customer's 12-digit AWS account id."
  }
}

variable "partition" {
  type    = string
  default = "aws"
}

variable "queue_name_prefix" {
  description = "null = the customer_queues default (the value provision uses)."
  type        = string
  default     = null
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

variable "tags" {
  type    = map(string)
  default = {}
}
