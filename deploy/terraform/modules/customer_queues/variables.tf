variable "customers" {
  description = "Customer codes (^[a-z0-9-]{2,50}$), one queue and one DLQ each."
  type        = list(string)
}

# Callers may pass null for any of these to get the default below (nullable = false); the defaults
# are the values of services/provision.py, kept in this one place.

variable "name_prefix" {
  description = "Queue name prefix; the queue of customer X is <prefix>X (config.json sqs_queue_arn)."
  type        = string
  default     = "changeconsole-"
  nullable    = false
}

variable "dlq_suffix" {
  description = "DLQ name suffix appended to the queue name (models.CustomerMapping.dlq_name)."
  type        = string
  default     = "-dlq"
  nullable    = false
}

variable "max_receive_count" {
  description = "config.json max_receive_count: failed attempts before the worker dead-letters a message."
  type        = number
  default     = 3
  nullable    = false
}

variable "max_receives_without_outcome" {
  description = "config.json max_receives_without_outcome. SQS's maxReceiveCount is max_receive_count + this (provision.sqs_max_receive_count)."
  type        = number
  default     = 50
  nullable    = false
}

variable "visibility_timeout_seconds" {
  description = "provision.QUEUE_VISIBILITY_TIMEOUT."
  type        = number
  default     = 120
  nullable    = false
}

variable "receive_wait_time_seconds" {
  description = "Long polling, provision.LONG_POLL_SECONDS."
  type        = number
  default     = 20
  nullable    = false
}

variable "message_retention_seconds" {
  description = "provision.QUEUE_RETENTION (4 days)."
  type        = number
  default     = 345600
  nullable    = false
}

variable "dlq_message_retention_seconds" {
  description = "provision.DLQ_RETENTION (14 days, the SQS maximum)."
  type        = number
  default     = 1209600
  nullable    = false
}

variable "tags" {
  description = "Tags for every queue."
  type        = map(string)
  default     = {}
}
