# Example dev environment. Every customer here has an entry in config.json (same directory);
# tests/test_deploy.py checks both describe the same customers, queues and roles.

environment        = "dev"
aws_region         = "us-east-1"
central_account_id = "111111111111"
bucket_name        = "msp-changeconsole-dev-metadata"
transport          = "s3-events"
max_receive_count  = 3

customers = {
  "acme" = {
    name                  = "Acme Corporation"
    account_id            = "410000000001"
    ses_region            = "us-east-1"
    external_id           = "cc-dev-acme-3f9c1a7e00"
    environment           = "production"
    ses_identity          = "notices.acme.example.com"
    restricted_recipients = ["change-notices-test@acme.example.com"]
  }
  "globex" = {
    name                  = "Globex Corporation"
    account_id            = "410000000002"
    ses_region            = "us-east-1"
    external_id           = "cc-dev-globex-3f9c1a7e01"
    environment           = "production"
    ses_identity          = "notices.globex.example.com"
    restricted_recipients = ["change-notices-test@globex.example.com"]
  }
  "initech" = {
    name                  = "Initech"
    account_id            = "410000000003"
    ses_region            = "us-east-1"
    external_id           = "cc-dev-initech-3f9c1a7e02"
    environment           = "staging"
    ses_identity          = "notices.initech.example.com"
    restricted_recipients = ["change-notices-test@initech.example.com"]
  }
}
