output "state_machine_arns" {
  description = "State machine ARN by workflow."
  value       = module.platform.state_machine_arns
}

output "ssm_parameter_names" {
  description = "SSM parameters the client reads."
  value       = module.platform.ssm_parameter_names
}

output "repository_urls" {
  description = "ECR repositories images.yml pushes to."
  value       = module.platform.repository_urls
}

output "registry" {
  description = "ECR registry host."
  value       = module.platform.registry
}
