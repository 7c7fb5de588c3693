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
  type    = string
  default = "changeconsole-"
}

variable "max_receive_count" {
  type    = number
  default = 3
}

variable "visibility_timeout_seconds" {
  type    = number
  default = 120
}

variable "receive_wait_time_seconds" {
  type    = number
  default = 20
}

variable "message_retention_seconds" {
  type    = number
  default = 345600
}

variable "dlq_message_retention_seconds" {
  type    = number
  default = 1209600
}

variable "tags" {
  type    = map(string)
  default = {}
}
