output "function_arns" {
  description = "Function ARN by logical name."
  value       = { for k, f in aws_lambda_function.this : k => f.arn }
}

output "function_names" {
  description = "Function name by logical name."
  value       = { for k, f in aws_lambda_function.this : k => f.function_name }
}

output "log_group_arns" {
  description = "Log group ARN by logical name (known before the functions exist)."
  value       = { for k, g in aws_cloudwatch_log_group.this : k => g.arn }
}

output "functions_environment" {
  description = "The distinct environment maps of the functions (one element: every function gets the same)."
  value       = distinct([for f in aws_lambda_function.this : one(f.environment).variables])
}
