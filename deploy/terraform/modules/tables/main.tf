# The status and ledger tables of docs/architecture.md "DynamoDB", as `changeconsole provision` creates
# them (services/provision.py: plan, table_definition): pk/sk string keys, on-demand billing, GSIs gsi1,
# gsi2 and gsi3 (keys <gsi>pk/<gsi>sk, projection ALL) on the status table, TTL on expires_at on the
# ledger, point-in-time recovery on both. Adding a GSI to an existing table is an in-place update (no
# replacement): `terraform apply` creates it and DynamoDB backfills it online.

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
  status_key_attributes = concat(["pk", "sk"], flatten([for gsi in var.status_gsis : ["${gsi}pk", "${gsi}sk"]]))
}

resource "aws_dynamodb_table" "status" {
  name                        = var.status_table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.deletion_protection

  dynamic "attribute" {
    for_each = local.status_key_attributes
    content {
      name = attribute.value
      type = "S"
    }
  }

  dynamic "global_secondary_index" {
    for_each = var.status_gsis
    content {
      name            = global_secondary_index.value
      hash_key        = "${global_secondary_index.value}pk"
      range_key       = "${global_secondary_index.value}sk"
      projection_type = "ALL"
    }
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  server_side_encryption {
    enabled     = var.kms_key_arn != ""
    kms_key_arn = var.kms_key_arn == "" ? null : var.kms_key_arn
  }

  tags = merge(var.tags, { "changeconsole:table" = "status" })
}

resource "aws_dynamodb_table" "ledger" {
  name                        = var.ledger_table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  ttl {
    attribute_name = var.ledger_ttl_attribute
    enabled        = true
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  server_side_encryption {
    enabled     = var.kms_key_arn != ""
    kms_key_arn = var.kms_key_arn == "" ? null : var.kms_key_arn
  }

  tags = merge(var.tags, { "changeconsole:table" = "ledger" })
}
