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

variable "shard_count" {
  description = "Worker shards (worker --shard K/N): QueueBacklog is also published per shard (dimension Shard = \"K/N\"). 1: not sharded."
  type        = number
  default     = 1

  validation {
    condition     = var.shard_count >= 1 && floor(var.shard_count) == var.shard_count
    error_message = "shard_count must be a whole number >= 1."
  }
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
