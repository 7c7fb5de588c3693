# Example staging environment. Every customer here has an entry in config.json (same directory);
# tests/test_deploy.py checks both describe the same customers, queues and roles.

environment        = "staging"
aws_region         = "us-east-1"
central_account_id = "222222222222"
bucket_name        = "msp-changeconsole-staging-metadata"
transport          = "s3-events"
max_receive_count  = 3

# IRSA for deploy/k8s (serviceaccount changeconsole/changeconsole-worker).
eks_oidc_provider_arn = "arn:aws:iam::222222222222:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"

customers = {
  "acme" = {
    name                  = "Acme Corporation"
    account_id            = "420000000001"
    ses_region            = "us-east-1"
    external_id           = "cc-staging-acme-b71e0c4400"
    environment           = "production"
    ses_identity          = "notices.acme.example.com"
    restricted_recipients = ["change-notices-test@acme.example.com"]
  }
  "globex" = {
    name                  = "Globex Corporation"
    account_id            = "420000000002"
    ses_region            = "us-east-1"
    external_id           = "cc-staging-globex-b71e0c4401"
    environment           = "production"
    ses_identity          = "notices.globex.example.com"
    restricted_recipients = ["change-notices-test@globex.example.com"]
  }
  "initech" = {
    name                  = "Initech"
    account_id            = "420000000003"
    ses_region            = "us-east-1"
    external_id           = "cc-staging-initech-b71e0c4402"
    environment           = "staging"
    ses_identity          = "notices.initech.example.com"
    restricted_recipients = ["change-notices-test@initech.example.com"]
  }
  "umbrella" = {
    name                  = "Umbrella Corporation"
    account_id            = "420000000004"
    ses_region            = "us-east-1"
    external_id           = "cc-staging-umbrella-b71e0c4403"
    environment           = "production"
    ses_identity          = "notices.umbrella.example.com"
    restricted_recipients = ["change-notices-test@umbrella.example.com"]
  }
}
