# Operators' access, enforced by IAM as well as by the app (services/authz.py): one IAM Identity Center
# permission set per operator role of config.json operator_roles, with a least-privilege inline policy
# made of the statements of the role's actions, scoped to its customers (their customers/{code}/ and
# payloads/{code}/ prefixes, queues, DLQs, roles in their accounts, and the ledger's leading keys
# DELIVERY#…#{code}/LATEST#…#{code}), by code or by the code in a principal tag (ABAC), and assigned to
# Identity Center groups in the central account. tests/test_operator_iam.py checks that every call each
# action makes is allowed exactly for the roles the app lets do it.
#
# What IAM cannot scope by customer, the app does: a change's archive/ and versions/ objects and the
# status table's items are keyed by change, not customer; a bucket's notification configuration is one
# document (customer add/remove rewrites it).

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
  # models.BUILTIN_ROLES, action for action (the parity test compares them).
  builtin_actions = {
    ChangeManagers = [
      "read",
      "change.draft",
      "change.submit",
      "change.edit",
      "change.approve",
      "change.complete",
      "change.cancel",
      "change.resend",
      "change.delete",
      "change.reindex",
      "change.preview",
      "change.test-send",
      "template.edit",
    ]
    CustomerManagers = [
      "read",
      "contacts.read",
      "contacts.edit",
      "topics.apply",
      "customer.add",
      "customer.verify",
      "customer.remove",
      "change.preview",
    ]
    Auditors = ["read", "audit.read"]
  }

  # Which actions need which group of statements.
  needs = {
    drafts        = ["change.draft", "change.submit", "change.delete"]
    archive       = ["change.submit", "change.edit", "change.approve", "change.complete", "change.cancel"]
    triggers      = ["change.submit", "change.edit", "change.approve", "change.complete", "change.cancel", "change.resend"]
    deleted       = ["change.delete"]
    index         = ["change.draft", "change.submit", "change.edit", "change.approve", "change.complete", "change.cancel", "change.resend", "change.delete", "change.reindex"]
    unindex       = ["change.delete", "change.reindex"]
    ledger        = ["change.resend"]
    redrive       = ["dlq.redrive"]
    export        = ["dlq.export"]
    import        = ["dlq.import"]
    purge         = ["dlq.purge"]
    audit_read    = ["audit.read"]
    templates     = ["template.edit"]
    customer_side = ["contacts.read", "contacts.edit", "topics.apply", "customer.verify", "customer.add", "change.preview", "change.test-send"]
    notifications = ["customer.verify", "customer.add", "customer.remove"]
    customer_queues = ["customer.add", "customer.remove"]
  }

  roles = {
    for name, r in var.roles : name => {
      permission_set   = r.permission_set
      actions          = sort(distinct(concat(["read"], lookup(local.builtin_actions, name, []), r.actions)))
      codes            = r.customer_tag != null ? ["$${aws:PrincipalTag/${r.customer_tag}}"] : (r.customers == null ? ["*"] : r.customers)
      tag              = r.customer_tag
      all              = r.customer_tag == null && r.customers == null
      groups           = r.groups
      session_duration = r.session_duration
    }
  }

  has = {
    for name, r in local.roles : name => {
      for group, actions in local.needs : group => length([for a in actions : a if contains(r.actions, a)]) > 0
    }
  }

  queue_base = "arn:${var.partition}:sqs:${var.region}:${var.account_id}:${var.queue_name_prefix}"
  objects    = "${var.bucket_arn}/"

  # The roles in the customers' accounts each role may assume: its customers' (all: every configured
  # one); a tag-scoped role any changeconsole role whose changeconsole:customer tag is its own tag.
  assumable = {
    for name, r in local.roles : name => (
      r.tag != null ? ["arn:${var.partition}:iam::*:role/${var.ses_role_name}"] :
      (r.all ? sort(values(var.customer_roles)) : [for c in r.codes : var.customer_roles[c] if contains(keys(var.customer_roles), c)])
    )
  }

  assignments = {
    for pair in flatten([
      for name, r in local.roles : [for g in r.groups : { key = "${name}/${g}", role = name, group = g }]
    ]) : pair.key => pair
  }
}

data "aws_iam_policy_document" "role" {
  for_each = local.roles

  # -- every role: read, and write its own audit records --------------------------------------------
  statement {
    sid       = "ReadChanges"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${local.objects}archive/*", "${local.objects}versions/*", "${local.objects}drafts/*", "${local.objects}templates/*"]
  }

  statement {
    sid       = "ListBucket"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
  }

  statement {
    sid       = "ReadTables"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"]
    resources = [var.status_table_arn, "${var.status_table_arn}/index/*", var.ledger_table_arn]
  }

  # report and the dashboard: every customer's delivery outcomes in one parallel Scan.
  statement {
    sid       = "ScanStatus"
    effect    = "Allow"
    actions   = ["dynamodb:Scan"]
    resources = [var.status_table_arn]
  }

  statement {
    sid       = "QueueState"
    effect    = "Allow"
    actions   = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = ["${local.queue_base}*"]
  }

  # Peeking a DLQ receives its messages (and releases them at once).
  statement {
    sid       = "PeekDeadLetters"
    effect    = "Allow"
    actions   = ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility"]
    resources = ["${local.queue_base}*-dlq"]
  }

  statement {
    sid       = "QueueMetrics"
    effect    = "Allow"
    actions   = ["cloudwatch:GetMetricData"]
    resources = ["*"]
  }

  statement {
    sid       = "WriteAudit"
    effect    = "Allow"
    actions   = ["s3:PutObject", "s3:PutObjectRetention"]
    resources = ["${local.objects}audit/*"]
  }

  # Group memberships and ABAC attributes of the operator (services/identity.Directory).
  statement {
    sid     = "Directory"
    effect  = "Allow"
    actions = ["identitystore:GetUserId", "identitystore:ListGroupMembershipsForMember", "identitystore:DescribeGroup", "identitystore:DescribeUser"]
    resources = [
      "arn:${var.partition}:identitystore::${var.account_id}:identitystore/${var.identity_store_id}",
      "arn:${var.partition}:identitystore:::user/*",
      "arn:${var.partition}:identitystore:::group/*",
      "arn:${var.partition}:identitystore:::membership/*",
    ]
  }

  # -- changes ------------------------------------------------------------------------------------------
  dynamic "statement" {
    for_each = local.has[each.key].drafts ? ["drafts"] : []
    content {
      sid       = "WriteDrafts"
      effect    = "Allow"
      actions   = ["s3:PutObject", "s3:DeleteObject"]
      resources = ["${local.objects}drafts/*"]
    }
  }

  dynamic "statement" {
    for_each = local.has[each.key].archive ? ["archive"] : []
    content {
      sid       = "WriteArchive"
      effect    = "Allow"
      actions   = ["s3:PutObject"]
      resources = ["${local.objects}archive/*", "${local.objects}versions/*"]
    }
  }

  dynamic "statement" {
    for_each = local.has[each.key].triggers ? ["triggers"] : []
    content {
      sid       = "TriggerCustomers"
      effect    = "Allow"
      actions   = ["s3:PutObject"]
      resources = flatten([for c in each.value.codes : ["${local.objects}customers/${c}/*", "${local.objects}payloads/${c}/*"]])
    }
  }

  dynamic "statement" {
    for_each = local.has[each.key].triggers ? ["direct"] : []
    content {
      sid       = "TriggerCustomersDirect"
      effect    = "Allow"
      actions   = ["sqs:SendMessage", "sqs:GetQueueUrl"]
      resources = concat([for c in each.value.codes : "${local.queue_base}${c}"], var.doorbell_queue_arns)
    }
  }

  # Team templates (templates/{name}.json): saved, renamed (a copy, then a delete) and deleted.
  dynamic "statement" {
    for_each = local.has[each.key].templates ? ["templates"] : []
    content {
      sid       = "WriteTemplates"
      effect    = "Allow"
      actions   = ["s3:PutObject", "s3:DeleteObject"]
      resources = ["${local.objects}templates/*"]
    }
  }

  dynamic "statement" {
    for_each = local.has[each.key].deleted ? ["deleted"] : []
    content {
      sid       = "SoftDelete"
      effect    = "Allow"
      actions   = ["s3:PutObject", "s3:DeleteObject"]
      resources = ["${local.objects}deleted/*", "${local.objects}archive/*", "${local.objects}drafts/*"]
    }
  }

  # The status table holds only CHANGE#<id> items (index and delivery records).
  dynamic "statement" {
    for_each = local.has[each.key].index ? ["index"] : []
    content {
      sid       = "WriteStatus"
      effect    = "Allow"
      actions   = concat(["dynamodb:PutItem", "dynamodb:UpdateItem"], local.has[each.key].unindex ? ["dynamodb:DeleteItem"] : [])
      resources = [var.status_table_arn]
      condition {
        test     = "ForAllValues:StringLike"
        variable = "dynamodb:LeadingKeys"
        values   = ["CHANGE#*"]
      }
    }
  }

  # Resending unknown recipients reopens their deliveries in the ledger, customer by customer.
  dynamic "statement" {
    for_each = local.has[each.key].ledger ? ["ledger"] : []
    content {
      sid       = "ReopenDeliveries"
      effect    = "Allow"
      actions   = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"]
      resources = [var.ledger_table_arn]
      condition {
        test     = "ForAllValues:StringLike"
        variable = "dynamodb:LeadingKeys"
        values   = flatten([for c in each.value.codes : ["DELIVERY#*#${c}", "LATEST#*#${c}"]])
      }
    }
  }

  # -- dead-letter queues -------------------------------------------------------------------------------
  dynamic "statement" {
    for_each = local.has[each.key].redrive ? ["redrive"] : []
    content {
      sid       = "RedriveFromDeadLetters"
      effect    = "Allow"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks", "sqs:CancelMessageMoveTask"]
      resources = [for c in each.value.codes : "${local.queue_base}${c}-dlq"]
    }
  }

  dynamic "statement" {
    for_each = local.has[each.key].redrive || local.has[each.key].import ? ["back"] : []
    content {
      sid       = "SendToSourceQueues"
      effect    = "Allow"
      actions   = ["sqs:SendMessage"]
      resources = [for c in each.value.codes : "${local.queue_base}${c}"]
    }
  }

  # The queue patterns of every customer (<prefix>*) cover the DLQs too: only importing sends there.
  dynamic "statement" {
    for_each = local.has[each.key].import ? [] : ["no-import"]
    content {
      sid       = "NothingIntoDeadLetters"
      effect    = "Deny"
      actions   = ["sqs:SendMessage"]
      resources = ["${local.queue_base}*-dlq"]
    }
  }

  dynamic "statement" {
    for_each = local.has[each.key].import ? ["import"] : []
    content {
      sid       = "ImportToDeadLetters"
      effect    = "Allow"
      actions   = ["sqs:SendMessage"]
      resources = [for c in each.value.codes : "${local.queue_base}${c}-dlq"]
    }
  }

  dynamic "statement" {
    for_each = local.has[each.key].export ? ["export"] : []
    content {
      sid       = "RecordExports"
      effect    = "Allow"
      actions   = ["s3:PutObject"]
      resources = [for c in each.value.codes : "${local.objects}dlq-exports/${c}.json"]
    }
  }

  dynamic "statement" {
    for_each = local.has[each.key].purge ? ["purge"] : []
    content {
      sid       = "PurgeDeadLetters"
      effect    = "Allow"
      actions   = ["sqs:DeleteMessage"]
      resources = [for c in each.value.codes : "${local.queue_base}${c}-dlq"]
    }
  }

  dynamic "statement" {
    for_each = local.has[each.key].purge ? ["purge-record"] : []
    content {
      sid       = "UseExportRecords"
      effect    = "Allow"
      actions   = ["s3:GetObject", "s3:DeleteObject"]
      resources = [for c in each.value.codes : "${local.objects}dlq-exports/${c}.json"]
    }
  }

  # -- audit trail ------------------------------------------------------------------------------------
  dynamic "statement" {
    for_each = local.has[each.key].audit_read ? ["audit"] : []
    content {
      sid       = "ReadAudit"
      effect    = "Allow"
      actions   = ["s3:GetObject"]
      resources = ["${local.objects}audit/*"]
    }
  }

  # -- customers ------------------------------------------------------------------------------------------
  # Contacts, topics, verification, and a notice's preview and test send act in the customer's account.
  dynamic "statement" {
    for_each = local.has[each.key].customer_side && length(local.assumable[each.key]) > 0 ? ["assume"] : []
    content {
      sid       = "ActInCustomerAccounts"
      effect    = "Allow"
      actions   = ["sts:AssumeRole"]
      resources = local.assumable[each.key]
      dynamic "condition" {
        for_each = each.value.tag == null ? [] : [each.value.tag]
        content {
          test     = "StringEquals"
          variable = "aws:ResourceTag/changeconsole:customer"
          values   = ["$${aws:PrincipalTag/${condition.value}}"]
        }
      }
    }
  }

  dynamic "statement" {
    for_each = local.has[each.key].notifications ? ["notifications"] : []
    content {
      sid       = "ReadNotifications"
      effect    = "Allow"
      actions   = ["s3:GetBucketNotification"]
      resources = [var.bucket_arn]
    }
  }

  # customer add/remove: the customer's queue and DLQ, and the bucket's notifications (one document:
  # not scoped by customer).
  dynamic "statement" {
    for_each = local.has[each.key].customer_queues ? ["queues"] : []
    content {
      sid       = "CustomerQueues"
      effect    = "Allow"
      actions   = ["sqs:CreateQueue", "sqs:SetQueueAttributes", "sqs:DeleteQueue"]
      resources = flatten([for c in each.value.codes : ["${local.queue_base}${c}", "${local.queue_base}${c}-dlq"]])
    }
  }

  dynamic "statement" {
    for_each = local.has[each.key].customer_queues ? ["central"] : []
    content {
      sid       = "CentralResourcesCheck"
      effect    = "Allow"
      actions   = ["s3:GetBucketVersioning", "s3:GetEncryptionConfiguration", "s3:GetBucketPublicAccessBlock", "s3:GetLifecycleConfiguration", "s3:GetBucketObjectLockConfiguration", "s3:PutBucketNotification", "dynamodb:DescribeTable"]
      resources = [var.bucket_arn, var.status_table_arn, var.ledger_table_arn]
    }
  }
}

resource "aws_ssoadmin_permission_set" "role" {
  for_each = local.roles

  name             = each.value.permission_set
  description      = "changeconsole ${each.key} (${var.name})"
  instance_arn     = var.instance_arn
  session_duration = each.value.session_duration
  tags             = var.tags
}

resource "aws_ssoadmin_permission_set_inline_policy" "role" {
  for_each = local.roles

  instance_arn       = var.instance_arn
  permission_set_arn = aws_ssoadmin_permission_set.role[each.key].arn
  inline_policy      = data.aws_iam_policy_document.role[each.key].json
}

data "aws_identitystore_group" "assigned" {
  for_each = toset(flatten([for r in values(local.roles) : r.groups]))

  identity_store_id = var.identity_store_id
  alternate_identifier {
    unique_attribute {
      attribute_path  = "DisplayName"
      attribute_value = each.key
    }
  }
}

resource "aws_ssoadmin_account_assignment" "role" {
  for_each = local.assignments

  instance_arn       = var.instance_arn
  permission_set_arn = aws_ssoadmin_permission_set.role[each.value.role].arn
  principal_type     = "GROUP"
  principal_id       = data.aws_identitystore_group.assigned[each.value.group].group_id
  target_type        = "AWS_ACCOUNT"
  target_id          = var.account_id
}

# ABAC: the principal tags a customer_tag-scoped role reads, from Identity Center user attributes.
resource "aws_ssoadmin_instance_access_control_attributes" "abac" {
  count = length(var.abac_attributes) > 0 ? 1 : 0

  instance_arn = var.instance_arn
  dynamic "attribute" {
    for_each = var.abac_attributes
    content {
      key = attribute.key
      value {
        source = ["$${path:${attribute.value}}"]
      }
    }
  }
}
