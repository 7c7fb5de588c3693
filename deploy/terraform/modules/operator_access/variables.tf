variable "name" {
  description = "changeconsole-<environment>: in the permission sets' descriptions."
  type        = string
}

variable "instance_arn" {
  description = "The IAM Identity Center instance (config.json identity_center.instance_arn)."
  type        = string
}

variable "identity_store_id" {
  description = "Its identity store (config.json identity_center.identity_store_id): groups are looked up there."
  type        = string
}

variable "account_id" {
  description = "The central account: the permission sets are assigned to it."
  type        = string
}

variable "partition" {
  type    = string
  default = "aws"
}

variable "region" {
  description = "Region of the queues and tables (config.json aws_region)."
  type        = string
}

variable "bucket_arn" {
  type = string
}

variable "status_table_arn" {
  type = string
}

variable "ledger_table_arn" {
  type = string
}

variable "queue_name_prefix" {
  description = "Queue names are <prefix><code>, DLQs <prefix><code>-dlq."
  type        = string
  default     = "changeconsole-"
}

variable "customer_roles" {
  description = "Customer code => the role in its account operators assume for contacts (config.json ses_role_arn)."
  type        = map(string)
}

variable "ses_role_name" {
  description = "Name of the customers' roles: a role scoped by customer_tag may assume the one tagged changeconsole:customer = its tag."
  type        = string
  default     = "changeconsole-ses-sender"
}

variable "roles" {
  description = "Role name => its permission set: the config.json operator_roles name, the same actions (ChangeManagers, CustomerManagers and Auditors have theirs built in; actions adds), the same scope (customers, or the code in the principal tag customer_tag; neither: every customer) and the Identity Center groups assigned to it in the central account."
  type = map(object({
    permission_set   = string
    actions          = optional(list(string), [])
    customers        = optional(list(string))
    customer_tag     = optional(string)
    groups           = optional(list(string), [])
    session_duration = optional(string, "PT8H")
  }))

  validation {
    condition     = alltrue([for r in values(var.roles) : r.customers == null || r.customer_tag == null])
    error_message = "A role is scoped by customers or by customer_tag, not both."
  }

  validation {
    condition     = alltrue([for r in values(var.roles) : can(regex("^[\\w+=,.@-]{1,32}$", r.permission_set))])
    error_message = "A permission set name has 1-32 characters of [A-Za-z0-9+=,.@_-]."
  }
}

variable "abac_attributes" {
  description = "Principal tag key => the Identity Center user attribute it comes from (config.json identity_center.attributes); empty: no ABAC attributes are managed here."
  type        = map(string)
  default     = {}
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "doorbell_queue_arns" {
  description = "The doorbell queues a fan-out rings after each sqs-direct trigger (empty: none)."
  type        = list(string)
  default     = []
}
