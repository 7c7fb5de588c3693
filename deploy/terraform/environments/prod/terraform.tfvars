# Example prod environment. Every customer here has an entry in config.json (same directory);
# tests/test_deploy.py checks both describe the same customers, queues and roles.

environment        = "prod"
aws_region         = "eu-west-1"
central_account_id = "333333333333"
bucket_name        = "msp-changeconsole-prod-metadata"
transport          = "s3-events"
max_receive_count  = 3

# IRSA for deploy/k8s (serviceaccount changeconsole/changeconsole-worker).
eks_oidc_provider_arn = "arn:aws:iam::333333333333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"

ecs = {
  image                    = "333333333333.dkr.ecr.eu-west-1.amazonaws.com/changeconsole-worker:0.1.0"
  config_ssm_parameter_arn = "arn:aws:ssm:eu-west-1:333333333333:parameter/changeconsole/prod/config"
  vpc_id                   = "vpc-0a1b2c3d4e5f60789"
  subnet_ids               = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"]
  min_tasks                = 2
  max_tasks                = 20
}

alarm_topic_arns      = ["arn:aws:sns:eu-west-1:333333333333:changeconsole-prod-alarms"]
ses_reputation_alarms = true

customers = {
  "acme" = {
    name                  = "Acme Corporation"
    account_id            = "210000000001"
    ses_region            = "us-east-1"
    external_id           = "cc-prod-acme-d2a8f61500"
    environment           = "production"
    ses_identity          = "notices.acme.example.com"
    restricted_recipients = []
  }
  "globex" = {
    name                  = "Globex Corporation"
    account_id            = "210000000002"
    ses_region            = "eu-west-1"
    external_id           = "cc-prod-globex-d2a8f61501"
    environment           = "production"
    ses_identity          = "notices.globex.example.com"
    restricted_recipients = []
  }
  "initech" = {
    name                  = "Initech"
    account_id            = "210000000003"
    ses_region            = "eu-west-1"
    external_id           = "cc-prod-initech-d2a8f61502"
    environment           = "staging"
    ses_identity          = "notices.initech.example.com"
    restricted_recipients = []
  }
  "umbrella" = {
    name                  = "Umbrella Corporation"
    account_id            = "210000000004"
    ses_region            = "us-east-1"
    external_id           = "cc-prod-umbrella-d2a8f61503"
    environment           = "production"
    ses_identity          = "notices.umbrella.example.com"
    restricted_recipients = []
  }
  "hooli" = {
    name                  = "Hooli"
    account_id            = "210000000005"
    ses_region            = "eu-west-1"
    external_id           = "cc-prod-hooli-d2a8f61504"
    environment           = "development"
    ses_identity          = "notices.hooli.example.com"
    restricted_recipients = []
  }
  "stark-industries" = {
    name                  = "Stark Industries"
    account_id            = "210000000006"
    ses_region            = "eu-west-1"
    external_id           = "cc-prod-stark-industries-d2a8f61505"
    environment           = "production"
    ses_identity          = "notices.stark-industries.example.com"
    restricted_recipients = []
  }
}

# Operators: one Identity Center permission set per role of config.json operator_roles (same names,
# actions and scopes; tests/test_deploy.py checks), assigned to these groups in this account.
operator_access = {
  instance_arn      = "arn:aws:sso:::instance/ssoins-7223a1b2c3d4e5f6"
  identity_store_id = "d-9067a1b2c3"
  roles = {
    ChangeManagers = {
      permission_set = "cc-prod-ChangeManagers"
      groups         = ["changeconsole-prod-change-managers"]
    }
    CustomerManagers = {
      permission_set = "cc-prod-CustomerManagers"
      groups         = ["changeconsole-prod-customer-managers"]
    }
    Auditors = {
      permission_set   = "cc-prod-Auditors"
      groups           = ["changeconsole-prod-auditors"]
      session_duration = "PT4H"
    }
    DlqOperators = {
      permission_set = "cc-prod-DlqOperators"
      actions        = ["dlq.redrive", "dlq.export", "dlq.purge"]
      groups         = ["changeconsole-prod-oncall"]
    }
  }
}

# Seven years of audit trail, under Object Lock (governance mode) for as long.
audit_retention = {
  transition_days  = 90
  expire_days      = 2557
  object_lock_mode = "GOVERNANCE"
  object_lock_days = 2557
}
