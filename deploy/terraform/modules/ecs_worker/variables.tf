variable "name" {
  description = "Service, task family and log group name, e.g. changeconsole-prod."
  type        = string
}

variable "image" {
  description = "Worker image (the repository's Dockerfile), pinned by tag or digest."
  type        = string
}

variable "task_role_arn" {
  description = "worker_iam output role_arn."
  type        = string
}

variable "config_ssm_parameter_arn" {
  description = "SSM parameter (SecureString) holding config.json, plain or gzip+base64 (deploy/docker/entrypoint.py)."
  type        = string
}

variable "secrets" {
  description = "Further environment secrets by reference: NAME => SSM parameter or Secrets Manager ARN."
  type        = map(string)
  default     = {}
}

variable "secrets_kms_key_arn" {
  description = "Customer-managed key of the SecureString parameters/secrets, if not the AWS-managed one."
  type        = string
  default     = ""
}

variable "environment" {
  description = "Plain environment variables."
  type        = map(string)
  default     = {}
}

variable "create_cluster" {
  description = "Create a cluster (Container Insights on); else run in cluster_arn, which must have Container Insights enabled for RunningTaskCount."
  type        = bool
  default     = true
}

variable "cluster_arn" {
  type    = string
  default = ""
}

variable "vpc_id" {
  type = string
}

variable "subnet_ids" {
  description = "Private subnets with a route to the AWS APIs (VPC endpoints or NAT)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Extra security groups (e.g. access to VPC interface endpoints)."
  type        = list(string)
  default     = []
}

variable "egress_cidr_blocks" {
  type    = list(string)
  default = ["0.0.0.0/0"]
}

variable "assign_public_ip" {
  type    = bool
  default = false
}

variable "cpu" {
  type    = number
  default = 512
}

variable "memory" {
  type    = number
  default = 1024
}

variable "cpu_architecture" {
  type    = string
  default = "X86_64"
}

variable "health_port" {
  description = "--health-port of the worker."
  type        = number
  default     = 8080
}

variable "shutdown_timeout" {
  description = "--shutdown-timeout: seconds the worker drains in-flight work after SIGTERM."
  type        = number
  default     = 25
}

variable "stop_timeout" {
  description = "Seconds ECS waits after SIGTERM before SIGKILL (Fargate maximum 120); must exceed shutdown_timeout."
  type        = number
  default     = 40

  validation {
    condition     = var.stop_timeout <= 120
    error_message = "Fargate allows a stopTimeout of at most 120 seconds."
  }
}

variable "min_tasks" {
  type    = number
  default = 2
}

variable "max_tasks" {
  type    = number
  default = 20
}

variable "backlog_metric" {
  description = "backlog_publisher output metric."
  type = object({
    namespace  = string
    name       = string
    dimensions = map(string)
  })
}

variable "backlog_per_task_target" {
  description = "Messages waiting per task the autoscaler aims for; tune from bench/ (docs/capacity.md)."
  type        = number
  default     = 50
}

variable "log_retention_days" {
  type    = number
  default = 30
}

variable "partition" {
  type    = string
  default = "aws"
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "shard_count" {
  description = "Worker shards: one service per shard running `worker --shard K/N`, each scaled on its own queues' backlog (backlog_metric plus dimension Shard = \"K/N\"). 1: one service serving every queue."
  type        = number
  default     = 1

  validation {
    condition     = var.shard_count >= 1 && floor(var.shard_count) == var.shard_count
    error_message = "shard_count must be a whole number >= 1."
  }
}
