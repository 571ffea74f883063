output "parameter_prefix" {
  description = "Path prefix of the parameters (/foldstack/<environment>)."
  value       = local.prefix
}

output "parameter_names" {
  description = "Full parameter name by short name."
  value       = { for k, p in aws_ssm_parameter.this : k => p.name }
}

output "parameter_arns" {
  description = "Parameter ARNs (grant ssm:GetParameters on these to client roles)."
  value       = [for p in aws_ssm_parameter.this : p.arn]
}

output "workflows" {
  description = "State machine ARN by client workflow, as published in the `workflows` parameter."
  value       = var.workflows
}
