output "role_arn" {
  description = "Goes into config.json customer_mappings.<code>.ses_role_arn."
  value       = aws_iam_role.ses_sender.arn
}
