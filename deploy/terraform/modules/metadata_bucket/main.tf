# The central metadata bucket and its per-customer S3 -> SQS event notifications, as
# `changeconsole provision` configures them (services/provision.py): versioning, default encryption,
# public access block, one notification per customer (id changeconsole-{code}, prefix customers/{code}/,
# suffix .json, s3:ObjectCreated:*) and a queue policy letting S3 send from this bucket only; the audit
# trail's retention (config.json audit_retention): lifecycle rule audit-retention and Object Lock.
#
# aws_s3_bucket_notification owns the bucket's whole notification configuration: notifications added
# outside Terraform are removed on the next apply (provision keeps foreign ones; Terraform cannot).

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

locals {
  notifications = {
    for code, q in var.customer_queues : code => {
      id        = "${var.notification_id_prefix}${code}"
      queue_arn = q.queue_arn
      queue_url = q.queue_url
      prefix    = "${var.trigger_prefix}${code}/"
      suffix    = var.trigger_suffix
    }
  }
  encryption_algorithm = var.kms_key_arn == "" ? "AES256" : "aws:kms"
}

resource "aws_s3_bucket" "this" {
  bucket        = var.bucket_name
  force_destroy = false
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.encryption_algorithm
      kms_master_key_id = var.kms_key_arn == "" ? null : var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != ""
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  ignore_public_acls      = true
  block_public_policy     = true
  restrict_public_buckets = true
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.this.arn,
      "${aws_s3_bucket.this.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket     = aws_s3_bucket.this.id
  policy     = data.aws_iam_policy_document.bucket.json
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# Triggers under customers/ and payloads/ are transient: the worker deletes them once delivered. With
# versioning on, their old versions and delete markers would pile up forever without these rules.
# Changes (archive/, versions/, drafts/, deleted/) keep their noncurrent versions for disaster recovery.
resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "transient-triggers"
    status = "Enabled"
    filter {
      prefix = var.trigger_prefix
    }
    noncurrent_version_expiration {
      noncurrent_days = var.transient_noncurrent_days
    }
    expiration {
      expired_object_delete_marker = true
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  rule {
    id     = "transient-payloads"
    status = "Enabled"
    filter {
      prefix = "payloads/"
    }
    noncurrent_version_expiration {
      noncurrent_days = var.transient_noncurrent_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  # The audit trail (changeconsole provision sets the same rule: services/provision.py audit_spec).
  dynamic "rule" {
    for_each = var.audit_transition_days != null || var.audit_expire_days != null ? ["audit"] : []
    content {
      id     = "audit-retention"
      status = "Enabled"
      filter {
        prefix = "audit/"
      }
      dynamic "transition" {
        for_each = var.audit_transition_days == null ? [] : [var.audit_transition_days]
        content {
          days          = transition.value
          storage_class = var.audit_transition_storage_class
        }
      }
      dynamic "expiration" {
        for_each = var.audit_expire_days == null ? [] : [var.audit_expire_days]
        content {
          days = expiration.value
        }
      }
    }
  }

  rule {
    id     = "change-history"
    status = "Enabled"
    filter {
      prefix = ""
    }
    noncurrent_version_expiration {
      noncurrent_days = var.history_noncurrent_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

# Object Lock for the audit trail: enabled on the bucket without a default retention (that would lock
# every object, changes and triggers included); the audit writer locks each audit/ object it puts for
# audit_retention.object_lock_days. Once enabled it cannot be disabled.
resource "aws_s3_bucket_object_lock_configuration" "audit" {
  count  = var.audit_object_lock ? 1 : 0
  bucket = aws_s3_bucket.this.id

  object_lock_enabled = "Enabled"

  depends_on = [aws_s3_bucket_versioning.this]
}

# Identical to the policy provision writes (Provisioner._queue_policy), so running both never fights.
data "aws_iam_policy_document" "queue" {
  for_each = local.notifications

  statement {
    sid       = "AllowS3Triggers"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [each.value.queue_arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.this.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "s3_triggers" {
  for_each = { for code, n in local.notifications : code => n if var.enable_notifications }

  queue_url = each.value.queue_url
  policy    = data.aws_iam_policy_document.queue[each.key].json
}

resource "aws_s3_bucket_notification" "this" {
  count  = var.enable_notifications ? 1 : 0
  bucket = aws_s3_bucket.this.id

  dynamic "queue" {
    for_each = local.notifications
    content {
      id            = queue.value.id
      queue_arn     = queue.value.queue_arn
      events        = var.events
      filter_prefix = queue.value.prefix
      filter_suffix = queue.value.suffix
    }
  }

  depends_on = [aws_sqs_queue_policy.s3_triggers]
}
