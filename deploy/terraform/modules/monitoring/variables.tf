variable "name" {
  description = "Deployment name: alarm name prefix, dashboard name, backlog metric Deployment dimension."
  type        = string
}

variable "queues" {
  description = "Customer code => its queue and DLQ names."
  type = map(object({
    queue_name = string
    dlq_name   = string
  }))
}

variable "queue_name_prefix" {
  type    = string
  default = "changeconsole-"
}

variable "alarm_actions" {
  description = "SNS topics notified on ALARM."
  type        = list(string)
  default     = []
}

variable "ok_actions" {
  type    = list(string)
  default = []
}

variable "oldest_message_age_seconds" {
  description = "A trigger older than this is stuck (visibility 120 s x maxReceiveCount 3 = 360 s of retries)."
  type        = number
  default     = 600
}

variable "metrics_namespace" {
  description = "config.json metrics.namespace (the worker's EMF namespace)."
  type        = string
  default     = "ChangeConsole"
}

variable "worker_processed_metric" {
  description = "EMF metric counting messages the worker settled successfully."
  type        = string
  default     = "MessagesProcessed"
}

variable "worker_failed_metric" {
  description = "EMF metric counting messages the worker failed (retried or dead-lettered)."
  type        = string
  default     = "MessagesFailed"
}

variable "worker_customer_dimension" {
  description = "The customer dimension of the worker's EMF metrics."
  type        = string
  default     = "Customer"
}

variable "error_rate_threshold_percent" {
  type    = number
  default = 5
}

variable "ses_accounts" {
  description = "Customer code => sending account id, for SES reputation alarms read cross-account (CloudWatch cross-account observability: the customer account must share its metrics with this one). {} = none."
  type        = map(string)
  default     = {}
}

variable "bounce_rate_threshold" {
  description = "Alarm before SES's own review threshold (0.05)."
  type        = number
  default     = 0.04
}

variable "complaint_rate_threshold" {
  description = "Alarm before SES's own review threshold (0.001)."
  type        = number
  default     = 0.0008
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "events_bounce_rate_percent" {
  description = "BounceRate (%, from SES events) at which a customer alarms: SES's warning level."
  type        = number
  default     = 5
}

variable "events_complaint_rate_percent" {
  description = "ComplaintRate (%, from SES events) at which a customer alarms: SES's warning level."
  type        = number
  default     = 0.1
}
