# The worker's role, least privilege: exactly the calls the worker makes (tests/test_worker_iam.py records
# them during real deliveries and checks each against this policy).
# * S3: reads archive/ (the change record it decides and renders from) and customers/ (a legacy flat
#   trigger key, only to learn its change id); deletes customers/ and payloads/ (settled triggers);
#   writes audit/. s3:ListBucket on the bucket so a missing object (a deleted change) reads as NoSuchKey
#   (404) rather than AccessDenied (403).
# * SQS: its customer queues (one name prefix in one account and region): receive, delete and change
#   visibility on the source queues only (an explicit Deny keeps it off the DLQs); send to the source
#   queues (a message that waited on another worker is requeued as a fresh copy) and to the DLQs
#   (permanent errors are dead-lettered at once with their reason).
# * DynamoDB: read and conditional writes on its status and ledger tables and their indexes; it never
#   deletes, batches or transacts.
# * sts:AssumeRole: only the listed customer SES roles (which in turn demand the customer's ExternalId).
# * cloudwatch:PutMetricData: only into its metrics namespace.
# Trusted by ECS tasks of this account and/or one EKS service account (IRSA).

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

data "aws_caller_identity" "current" {}

locals {
  read_prefixes   = ["archive/", "customers/"]
  delete_prefixes = ["customers/", "payloads/"]
  write_prefixes  = ["audit/"]
  oidc_issuer     = var.eks_oidc_provider_arn == "" ? "" : element(split("oidc-provider/", var.eks_oidc_provider_arn), 1)
  table_resources = flatten([for arn in var.table_arns : [arn, "${arn}/index/*"]])
  # Managed policies hold at most 6,144 characters: the SES role list is split across several.
  ses_role_chunks = chunklist(sort(distinct(var.ses_role_arns)), var.ses_roles_per_policy)
}

data "aws_iam_policy_document" "trust" {
  dynamic "statement" {
    for_each = var.trust_ecs_tasks ? ["ecs"] : []
    content {
      sid     = "EcsTasks"
      effect  = "Allow"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "Service"
        identifiers = ["ecs-tasks.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [data.aws_caller_identity.current.account_id]
      }
    }
  }

  dynamic "statement" {
    for_each = local.oidc_issuer == "" ? [] : ["eks"]
    content {
      sid     = "EksServiceAccount"
      effect  = "Allow"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [var.eks_oidc_provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:sub"
        values   = ["system:serviceaccount:${var.eks_namespace}:${var.eks_service_account}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "worker" {
  name                 = var.role_name
  description          = "changeconsole queue worker"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600
  tags                 = var.tags

  lifecycle {
    precondition {
      condition     = var.trust_ecs_tasks || var.eks_oidc_provider_arn != ""
      error_message = "The worker role needs a principal: trust_ecs_tasks and/or eks_oidc_provider_arn."
    }
  }
}

data "aws_iam_policy_document" "worker" {
  statement {
    sid       = "ReadChangesAndTriggers"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = [for p in local.read_prefixes : "${var.bucket_arn}/${p}*"]
  }

  statement {
    sid       = "DeleteDeliveredTriggers"
    effect    = "Allow"
    actions   = ["s3:DeleteObject"]
    resources = [for p in local.delete_prefixes : "${var.bucket_arn}/${p}*"]
  }

  statement {
    sid       = "WriteAudit"
    effect    = "Allow"
    actions   = ["s3:PutObject", "s3:PutObjectRetention"] # retention: audit objects under Object Lock
    resources = [for p in local.write_prefixes : "${var.bucket_arn}/${p}*"]
  }

  statement {
    sid       = "ListBucket"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
  }

  statement {
    sid       = "ConsumeCustomerQueues"
    effect    = "Allow"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
    resources = [var.queue_arn_pattern]
  }

  # The queue pattern also matches the DLQs: the worker never consumes them (the DLQ tools do, under
  # an operator's role).
  statement {
    sid       = "NeverConsumeDeadLetterQueues"
    effect    = "Deny"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
    resources = [var.dlq_arn_pattern]
  }

  # Doorbell mode: a queue's depth decides whether it is long-polled (worker/runtime.py).
  statement {
    sid       = "CustomerQueueDepth"
    effect    = "Allow"
    actions   = ["sqs:GetQueueAttributes"]
    resources = [var.queue_arn_pattern]
  }

  # sqs-direct: the shard's doorbell is received from, and rung with each retry copy.
  dynamic "statement" {
    for_each = length(var.doorbell_queue_arns) > 0 ? ["doorbell"] : []
    content {
      sid       = "Doorbell"
      effect    = "Allow"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage", "sqs:GetQueueUrl"]
      resources = var.doorbell_queue_arns
    }
  }

  statement {
    sid       = "RequeueAndDeadLetter"
    effect    = "Allow"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl"]
    resources = [var.queue_arn_pattern]
  }

  statement {
    sid    = "StatusAndLedger"
    effect = "Allow"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:Query",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
    ]
    resources = local.table_resources
  }

  # Only the reconciler's own items (partition RECONCILE, services/ledger.py) are ever deleted.
  statement {
    sid       = "DropReconcileItems"
    effect    = "Allow"
    actions   = ["dynamodb:DeleteItem"]
    resources = local.table_resources
    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["RECONCILE"]
    }
  }

  # SES events (services/events.py): read from the central events queue, deleted once applied.
  statement {
    sid       = "ConsumeSesEvents"
    effect    = "Allow"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = [var.events_queue_arn]
  }

  statement {
    sid       = "EmfMetrics"
    effect    = "Allow"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }

  dynamic "statement" {
    for_each = length(var.kms_key_arns) > 0 ? ["kms"] : []
    content {
      sid       = "Kms"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = var.kms_key_arns
    }
  }
}

resource "aws_iam_role_policy" "worker" {
  name   = "changeconsole-worker"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}

data "aws_iam_policy_document" "assume_ses" {
  count = length(local.ses_role_chunks)

  statement {
    sid       = "AssumeCustomerSesRoles"
    effect    = "Allow"
    actions   = ["sts:AssumeRole"]
    resources = local.ses_role_chunks[count.index]
  }
}

resource "aws_iam_policy" "assume_ses" {
  count = length(local.ses_role_chunks)

  name        = "${var.role_name}-assume-ses-${count.index}"
  description = "changeconsole worker: assume customer SES roles (part ${count.index})"
  policy      = data.aws_iam_policy_document.assume_ses[count.index].json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "assume_ses" {
  count = length(local.ses_role_chunks)

  role       = aws_iam_role.worker.name
  policy_arn = aws_iam_policy.assume_ses[count.index].arn
}
