# Applied in the CUSTOMER's account (by the customer, or by the MSP with a role it grants there): the
# SES role the changeconsole worker assumes. Values per customer come from the central environment:
#   terraform -chdir=../environments/prod output -json customer_side | jq '.acme'
#   terraform init -backend-config="key=changeconsole/customers/acme/terraform.tfstate" \
#                  -backend-config="bucket=<state bucket>" -backend-config="region=<region>" \
#                  -backend-config="dynamodb_table=<lock table>"
#   terraform apply -var-file=acme.tfvars

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.40"
    }
  }

  # Partial configuration: one state per customer, given with -backend-config at init.
  backend "s3" {
    encrypt = true
  }
}

provider "aws" {
  region              = var.ses_region
  allowed_account_ids = [var.account_id]
}

module "ses_role" {
  source = "../modules/customer_ses_role"

  worker_role_arn   = var.worker_role_arn
  external_id       = var.external_id
  role_name         = var.role_name
  ses_identity      = var.ses_identity
  ses_region        = var.ses_region
  contact_list_name      = var.contact_list_name
  customer_code          = var.customer_code
  configuration_set_name = var.configuration_set_name
}

# Every send names this configuration set; its event destination publishes the customer's SES events
# to the MSP's central topic (customer_side.events_topic_arn), where the worker reads them.
resource "aws_sesv2_configuration_set" "events" {
  configuration_set_name = var.configuration_set_name
}

resource "aws_sesv2_configuration_set_event_destination" "central" {
  configuration_set_name = aws_sesv2_configuration_set.events.configuration_set_name
  event_destination_name = "changeconsole-central"

  event_destination {
    enabled              = true
    matching_event_types = ["SEND", "DELIVERY", "BOUNCE", "COMPLAINT", "REJECT", "DELIVERY_DELAY", "RENDERING_FAILURE"]
    sns_destination {
      topic_arn = var.events_topic_arn
    }
  }
}
