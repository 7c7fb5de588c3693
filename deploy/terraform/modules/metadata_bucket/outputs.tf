output "bucket_name" {
  value = aws_s3_bucket.this.id
}

output "bucket_arn" {
  value = aws_s3_bucket.this.arn
}

output "notification_ids" {
  description = "Customer code => notification id."
  value       = { for code, n in local.notifications : code => n.id }
}
