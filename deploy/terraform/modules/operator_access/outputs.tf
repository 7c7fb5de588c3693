output "permission_sets" {
  description = "Role => permission set name (the names config.json operator_roles lists as principals)."
  value       = { for name, r in local.roles : name => r.permission_set }
}

output "permission_set_arns" {
  value = { for name, ps in aws_ssoadmin_permission_set.role : name => ps.arn }
}

output "role_actions" {
  description = "Role => the actions its permission set allows (the app's role matrix, for the parity test)."
  value       = { for name, r in local.roles : name => r.actions }
}
