output "ses_role_arn" {
  description = "config.json customer_mappings.<code>.ses_role_arn."
  value       = module.ses_role.role_arn
}
