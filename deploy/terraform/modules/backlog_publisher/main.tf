# Publishes ChangeConsole/QueueBacklog{Deployment=<name>} every minute: the sum of messages waiting in
# every customer queue (see src/backlog_publisher.py). ECS target tracking (ecs_worker) and KEDA
# (deploy/k8s/scaledobject.yaml) scale the workers on it.

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
  }
}

data "archive_file" "code" {
  type        = "zip"
  source_file = "${path.module}/src/backlog_publisher.py"
  output_path = "${path.module}/.build/backlog_publisher.zip"
}

data "aws_iam_policy_document" "trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "publisher" {
  name               = "${var.name}-backlog-publisher"
  assume_role_policy = data.aws_iam_policy_document.trust.json
  tags               = var.tags
}

data "aws_iam_policy_document" "publisher" {
  statement {
    sid       = "ListQueues"
    effect    = "Allow"
    actions   = ["sqs:ListQueues"]
    resources = ["*"]
  }

  statement {
    sid       = "QueueDepth"
    effect    = "Allow"
    actions   = ["sqs:GetQueueAttributes"]
    resources = [var.queue_arn_pattern]
  }

  statement {
    sid       = "PublishBacklog"
    effect    = "Allow"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }

  statement {
    sid       = "Logs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.publisher.arn}:*"]
  }
}

resource "aws_iam_role_policy" "publisher" {
  name   = "backlog-publisher"
  role   = aws_iam_role.publisher.id
  policy = data.aws_iam_policy_document.publisher.json
}

resource "aws_cloudwatch_log_group" "publisher" {
  name              = "/aws/lambda/${var.name}-backlog-publisher"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_lambda_function" "publisher" {
  function_name    = "${var.name}-backlog-publisher"
  role             = aws_iam_role.publisher.arn
  runtime          = "python3.12"
  handler          = "backlog_publisher.handler"
  filename         = data.archive_file.code.output_path
  source_code_hash = data.archive_file.code.output_base64sha256
  timeout          = 50
  memory_size      = 256

  environment {
    variables = {
      QUEUE_NAME_PREFIX = var.queue_name_prefix
      DLQ_SUFFIX        = var.dlq_suffix
      METRIC_NAMESPACE  = var.metrics_namespace
      DEPLOYMENT        = var.name
      SHARD_COUNT       = tostring(var.shard_count)
    }
  }

  depends_on = [aws_cloudwatch_log_group.publisher, aws_iam_role_policy.publisher]
  tags       = var.tags
}

resource "aws_cloudwatch_event_rule" "every_minute" {
  name                = "${var.name}-backlog-publisher"
  schedule_expression = "rate(1 minute)"
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "publisher" {
  rule = aws_cloudwatch_event_rule.every_minute.name
  arn  = aws_lambda_function.publisher.arn
}

resource "aws_lambda_permission" "events" {
  statement_id  = "AllowEventBridge"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.publisher.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.every_minute.arn
}
