variable "name" {
  description = "Deployment name, e.g. changeconsole-prod: the metric's Deployment dimension."
  type        = string
}

variable "queue_name_prefix" {
  type    = string
  default = "changeconsole-"
}

variable "dlq_suffix" {
  type    = string
  default = "-dlq"
}

variable "queue_arn_pattern" {
  description = "ARN pattern of the customer queues, e.g. arn:aws:sqs:eu-west-1:111111111111:changeconsole-*."
  type        = string
}

variable "metrics_namespace" {
  type    = string
  default = "ChangeConsole"
}

variable "log_retention_days" {
  type    = number
  default = 14
}

variable "tags" {
  type    = map(string)
  default = {}
}
