# Customer side: the role the changeconsole worker assumes in the CUSTOMER's account to send that
# customer's notices from its own SES. Apply it in the customer's account (deploy/terraform/customer-account).
# Trust: only the worker role, and only with this customer's ExternalId (confused-deputy protection:
# another customer's ExternalId, or none, cannot assume it). Permissions: send from the verified identity
# and read the contact list; nothing else.

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

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  region       = var.ses_region == "" ? data.aws_region.current.name : var.ses_region
  ses_arn_base = "arn:${data.aws_partition.current.partition}:ses:${local.region}:${data.aws_caller_identity.current.account_id}"
  send_resources = concat(
    ["${local.ses_arn_base}:identity/${var.ses_identity}"],
    var.configuration_set_name == "" ? [] : ["${local.ses_arn_base}:configuration-set/${var.configuration_set_name}"],
  )
}

data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "ChangeconsoleWorker"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [var.worker_role_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [var.external_id]
    }
  }
}

resource "aws_iam_role" "ses_sender" {
  name                 = var.role_name
  description          = "Lets the MSP's changeconsole worker send change notices from this account's SES"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600
  # changeconsole:customer: a central role scoped by principal tag (modules/operator_access) may assume
  # only the role whose tag is its own.
  tags = merge(var.tags, var.customer_code == "" ? {} : { "changeconsole:customer" = var.customer_code })
}

data "aws_iam_policy_document" "permissions" {
  statement {
    sid       = "SendFromIdentity"
    effect    = "Allow"
    actions   = ["ses:SendEmail", "ses:SendRawEmail"]
    resources = local.send_resources

    dynamic "condition" {
      for_each = length(var.from_addresses) > 0 ? ["from"] : []
      content {
        test     = "StringEquals"
        variable = "ses:FromAddress"
        values   = var.from_addresses
      }
    }
  }

  statement {
    sid       = "ReadContactList"
    effect    = "Allow"
    actions   = ["ses:ListContacts", "ses:GetContact", "ses:GetContactList"]
    resources = ["${local.ses_arn_base}:contact-list/${var.contact_list_name}"]
  }

  # A hard bounce or complaint (an SES event) opts the contact out or unsubscribes it, per
  # config.json events.reputation_policy; the address is looked up in the account's suppression list.
  statement {
    sid       = "ReputationUpdates"
    effect    = "Allow"
    actions   = ["ses:UpdateContact"]
    resources = ["${local.ses_arn_base}:contact-list/${var.contact_list_name}"]
  }

  statement {
    sid       = "SuppressionLookup"
    effect    = "Allow"
    actions   = ["ses:GetSuppressedDestination"]
    resources = ["*"]
  }

  # Without a contact_list_name for the customer in config.json, the worker uses the account's own
  # list (SES allows one per account): it lists them to find its name. No resource-level scoping exists.
  statement {
    sid       = "FindContactList"
    effect    = "Allow"
    actions   = ["ses:ListContactLists"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "ses_sender" {
  name   = "changeconsole-ses-sender"
  role   = aws_iam_role.ses_sender.id
  policy = data.aws_iam_policy_document.permissions.json
}
