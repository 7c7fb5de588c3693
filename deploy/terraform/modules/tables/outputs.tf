output "status_table_name" {
  value = aws_dynamodb_table.status.name
}

output "status_table_arn" {
  value = aws_dynamodb_table.status.arn
}

output "ledger_table_name" {
  value = aws_dynamodb_table.ledger.name
}

output "ledger_table_arn" {
  value = aws_dynamodb_table.ledger.arn
}
