variable "account_id" {
  description = "The customer's account (customer_side.account_id)."
  type        = string
}

variable "worker_role_arn" {
  description = "The MSP's worker role (customer_side.worker_role_arn)."
  type        = string
}

variable "external_id" {
  description = "customer_side.external_id (= config.json ses_external_id)."
  type        = string
}

variable "role_name" {
  type    = string
  default = "changeconsole-ses-sender"
}

variable "ses_identity" {
  description = "Verified SES identity (domain or address) of this customer."
  type        = string
}

variable "ses_region" {
  description = "customer_side.ses_region (= config.json customer region)."
  type        = string
}

variable "contact_list_name" {
  type    = string
  default = "changeconsole"
}

variable "customer_code" {
  description = "customer_side.customer_code: tags the role for operator roles scoped by principal tag."
  type        = string
  default     = ""
}

variable "configuration_set_name" {
  description = "customer_side.configuration_set_name (= config.json events.configuration_set)."
  type        = string
  default     = "changeconsole"
}

variable "events_topic_arn" {
  description = "customer_side.events_topic_arn: the MSP's central SES events topic."
  type        = string
}
