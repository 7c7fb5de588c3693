variable "topic_name" {
  description = "config.json events.topic_name."
  type        = string
  default     = "changeconsole-ses-events"
}

variable "queue_name" {
  description = "config.json events.queue_name."
  type        = string
  default     = "changeconsole-ses-events"
}

variable "customer_account_ids" {
  description = "Accounts whose SES may publish events to the topic (every customer's)."
  type        = list(string)
}

variable "message_retention_seconds" {
  type    = number
  default = 345600
}

variable "receive_wait_time_seconds" {
  type    = number
  default = 20
}

variable "kms_key_arn" {
  type    = string
  default = ""
}

variable "tags" {
  type    = map(string)
  default = {}
}
