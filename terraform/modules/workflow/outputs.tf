output "state_machine_arn" {
  description = "ARN of the state machine."
  value       = aws_sfn_state_machine.this.arn
}

output "state_machine_name" {
  description = "Name of the state machine."
  value       = aws_sfn_state_machine.this.name
}

output "log_group_name" {
  description = "Execution log group."
  value       = aws_cloudwatch_log_group.this.name
}

output "template_variable_names" {
  description = "Every placeholder name passed to templatefile()."
  value       = sort(keys(local.template_vars))
}

output "definition" {
  description = "The deployed ASL (placeholders filled)."
  value       = local.definition
}
