# The worker on ECS Fargate: task definition (read-only root, /tmp volume, non-root, health check on
# /healthz, stopTimeout longer than the drain deadline, config from an SSM parameter, secrets by
# reference, awslogs), service, and target-tracking autoscaling on queue backlog per task
# (QueueBacklog from backlog_publisher / RunningTaskCount from Container Insights). With shard_count N > 1
# there is one task definition, service and scaling policy per shard (for_each): shard K runs
# `worker --shard K/N` and scales on the backlog of its own queues only.
# deploy/ecs/*.json is the same definition for `aws ecs register-task-definition --cli-input-json`.

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

data "aws_region" "current" {}

locals {
  # Shard key => --shard value; "all" (no --shard) when not sharded.
  shards       = var.shard_count > 1 ? { for k in range(var.shard_count) : tostring(k) => "${k}/${var.shard_count}" } : { all = "" }
  shard_names  = { for key, shard in local.shards : key => shard == "" ? var.name : "${var.name}-shard-${key}" }
  cluster_arn  = var.create_cluster ? aws_ecs_cluster.this[0].arn : var.cluster_arn
  cluster_name = var.create_cluster ? aws_ecs_cluster.this[0].name : element(split("/", var.cluster_arn), 1)
  command = [
    "changeconsole", "worker",
    "--health-port", tostring(var.health_port),
    "--shutdown-timeout", tostring(var.shutdown_timeout),
  ]
  health_command = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${var.health_port}/healthz', timeout=4).close()"
  environment = merge(var.environment, {
    CHANGECONSOLE_CONFIG_OUT   = "/tmp/changeconsole/config.json"
    AWS_STS_REGIONAL_ENDPOINTS = "regional"
  })
  secrets = merge(var.secrets, { CHANGECONSOLE_CONFIG_JSON = var.config_ssm_parameter_arn })
  container = {
    name                   = "worker"
    image                  = var.image
    essential              = true
    command                = local.command
    user                   = "10001:10001"
    readonlyRootFilesystem = true
    stopTimeout            = var.stop_timeout
    portMappings           = [{ containerPort = var.health_port, protocol = "tcp" }]
    environment            = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
    secrets                = [for k in sort(keys(local.secrets)) : { name = k, valueFrom = local.secrets[k] }]
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    healthCheck = {
      command     = ["CMD", "python", "-c", local.health_command]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    linuxParameters = {
      initProcessEnabled = true
      capabilities       = { drop = ["ALL"] }
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.worker.name
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = "worker"
        mode                  = "non-blocking"
        max-buffer-size       = "4m"
      }
    }
  }
}

resource "aws_ecs_cluster" "this" {
  count = var.create_cluster ? 1 : 0
  name  = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "worker" {
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

data "aws_iam_policy_document" "execution_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.execution_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${var.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  statement {
    sid       = "ReadConfigAndSecrets"
    effect    = "Allow"
    actions   = ["ssm:GetParameters", "secretsmanager:GetSecretValue"]
    resources = sort(distinct(values(local.secrets)))
  }

  dynamic "statement" {
    for_each = var.secrets_kms_key_arn == "" ? [] : ["kms"]
    content {
      sid       = "DecryptSecrets"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = [var.secrets_kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "read-config-and-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}

resource "aws_ecs_task_definition" "worker" {
  for_each = local.shards

  family                   = local.shard_names[each.key]
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = var.task_role_arn
  container_definitions = jsonencode([
    merge(local.container, { command = each.value == "" ? local.command : concat(local.command, ["--shard", each.value]) })
  ])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  volume {
    name = "tmp"
  }

  lifecycle {
    precondition {
      condition     = var.stop_timeout > var.shutdown_timeout + 5
      error_message = "stop_timeout must exceed shutdown_timeout (the drain deadline) by more than 5 s."
    }
  }

  tags = var.tags
}

resource "aws_security_group" "worker" {
  name        = "${var.name}-worker"
  description = "changeconsole worker: no inbound; HTTPS out to AWS APIs"
  vpc_id      = var.vpc_id

  egress {
    description = "AWS APIs (VPC endpoints or NAT)"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = var.egress_cidr_blocks
  }

  tags = var.tags
}

resource "aws_ecs_service" "worker" {
  for_each = local.shards

  name                               = local.shard_names[each.key]
  cluster                            = local.cluster_arn
  task_definition                    = aws_ecs_task_definition.worker[each.key].arn
  desired_count                      = var.min_tasks
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"
  wait_for_steady_state              = false

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = concat([aws_security_group.worker.id], var.security_group_ids)
    assign_public_ip = var.assign_public_ip
  }

  lifecycle {
    ignore_changes = [desired_count]
  }

  tags = var.tags
}

resource "aws_appautoscaling_target" "worker" {
  for_each = local.shards

  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${local.cluster_name}/${aws_ecs_service.worker[each.key].name}"
  min_capacity       = var.min_tasks
  max_capacity       = var.max_tasks
}

resource "aws_appautoscaling_policy" "backlog_per_task" {
  for_each = local.shards

  name               = "${local.shard_names[each.key]}-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.worker[each.key].service_namespace
  scalable_dimension = aws_appautoscaling_target.worker[each.key].scalable_dimension
  resource_id        = aws_appautoscaling_target.worker[each.key].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.backlog_per_task_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    customized_metric_specification {
      metrics {
        id          = "backlog"
        label       = "Messages waiting in customer queues"
        return_data = false
        metric_stat {
          stat = "Maximum"
          metric {
            namespace   = var.backlog_metric.namespace
            metric_name = var.backlog_metric.name
            dynamic "dimensions" {
              for_each = merge(var.backlog_metric.dimensions, each.value == "" ? {} : { Shard = each.value })
              content {
                name  = dimensions.key
                value = dimensions.value
              }
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        label       = "Running worker tasks"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"
            dimensions {
              name  = "ClusterName"
              value = local.cluster_name
            }
            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.worker[each.key].name
            }
          }
        }
      }

      metrics {
        id          = "backlog_per_task"
        label       = "Backlog per task"
        expression  = "backlog / IF(tasks < 1, 1, tasks)"
        return_data = true
      }
    }
  }
}

# Before sharding these resources had no key: an existing stack keeps them as the "all" instance.
moved {
  from = aws_ecs_task_definition.worker
  to   = aws_ecs_task_definition.worker["all"]
}

moved {
  from = aws_ecs_service.worker
  to   = aws_ecs_service.worker["all"]
}

moved {
  from = aws_appautoscaling_target.worker
  to   = aws_appautoscaling_target.worker["all"]
}

moved {
  from = aws_appautoscaling_policy.backlog_per_task
  to   = aws_appautoscaling_policy.backlog_per_task["all"]
}
