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

# Operators: one Identity Center permission set per role of config.json operator_roles (same names,
# actions and scopes; tests/test_deploy.py checks), assigned to these groups in this account.
operator_access = {
  instance_arn      = "arn:aws:sso:::instance/ssoins-7223a1b2c3d4e5f6"
  identity_store_id = "d-9067a1b2c3"
  roles = {
    ChangeManagers = {
      permission_set = "cc-dev-ChangeManagers"
      groups         = ["changeconsole-dev-change-managers"]
    }
    CustomerManagers = {
      permission_set = "cc-dev-CustomerManagers"
      customers      = ["acme"]
      groups         = ["changeconsole-dev-acme-contacts"]
    }
    Auditors = {
      permission_set = "cc-dev-Auditors"
      groups         = ["changeconsole-dev-auditors"]
    }
    DlqOperators = {
      permission_set = "cc-dev-DlqOperators"
      actions        = ["dlq.redrive", "dlq.export", "dlq.import", "dlq.purge"]
      groups         = ["changeconsole-dev-oncall"]
    }
  }
}

audit_retention = {
  transition_days = 30
  expire_days     = 400
}
