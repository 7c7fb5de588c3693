# changeconsole staging: central account 222222222222, region us-east-1.
#   cd deploy/terraform/environments/staging
#   terraform init && terraform plan -out tfplan && terraform apply tfplan
# Customers are listed in terraform.tfvars; keep config.json in step (docs/runbooks/onboarding.md).

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.40"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
  }

  # Remote state in S3 with DynamoDB locking (both created once per account, outside this stack).
  backend "s3" {
    bucket         = "msp-terraform-state-222222222222"
    key            = "changeconsole/staging/terraform.tfstate"
    region         = "us-east-1"
    dynamodb_table = "msp-terraform-locks"
    encrypt        = true
  }
}

provider "aws" {
  region              = var.aws_region
  allowed_account_ids = [var.central_account_id]

  default_tags {
    tags = {
      "changeconsole:managed-by" = "terraform"
      "changeconsole:stack"      = "deploy/terraform/environments/staging"
    }
  }
}

module "changeconsole" {
  source = "../../modules/stack"

  environment           = var.environment
  aws_region            = var.aws_region
  central_account_id    = var.central_account_id
  bucket_name           = var.bucket_name
  transport             = var.transport
  customers             = var.customers
  max_receive_count     = var.max_receive_count
  status_table_name     = var.status_table_name
  ledger_table_name     = var.ledger_table_name
  metrics_namespace     = var.metrics_namespace
  ecs                   = var.ecs
  eks_oidc_provider_arn = var.eks_oidc_provider_arn
  worker_shards         = var.worker_shards
  alarm_topic_arns      = var.alarm_topic_arns
  ses_reputation_alarms = var.ses_reputation_alarms
  operator_access       = var.operator_access
  audit_retention       = var.audit_retention
}
