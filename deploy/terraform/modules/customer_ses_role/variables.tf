variable "worker_role_arn" {
  description = "The MSP's worker role (worker_iam output role_arn), the only principal trusted."
  type        = string
}

variable "external_id" {
  description = "This customer's ExternalId (config.json ses_external_id); unique per customer."
  type        = string

  validation {
    condition     = length(var.external_id) >= 16
    error_message = "Use an ExternalId of at least 16 characters, unique to this customer."
  }
}

variable "role_name" {
  description = "Must match the role name in config.json ses_role_arn."
  type        = string
  default     = "changeconsole-ses-sender"
}

variable "ses_identity" {
  description = "The verified SES identity (domain or address) notices are sent from."
  type        = string
}

variable "ses_region" {
  description = "SES region (config.json customer region); empty for the provider's region."
  type        = string
  default     = ""
}

variable "contact_list_name" {
  description = "config.json contact_list_name (or the customer's override)."
  type        = string
  default     = "changeconsole"
}

variable "configuration_set_name" {
  description = "SES configuration set the worker names when sending, if any."
  type        = string
  default     = ""
}

variable "from_addresses" {
  description = "If set, the only From addresses allowed (ses:FromAddress)."
  type        = list(string)
  default     = []
}

variable "customer_code" {
  description = "The customer's code in config.json: tags the role changeconsole:customer (for operator roles scoped by principal tag)."
  type        = string
  default     = ""
}

variable "tags" {
  type    = map(string)
  default = {}
}
