output "state_machine_arns" {
  description = "State machine ARN by workflow."
  value       = { for wf, m in module.workflow : wf => m.state_machine_arn }
}

output "ssm_parameter_names" {
  description = "SSM parameters the client reads, by short name."
  value       = module.config.parameter_names
}

output "buckets" {
  description = "The stack's buckets by role."
  value       = module.storage.buckets
}

output "repository_urls" {
  description = "ECR repository URL by image."
  value       = module.ecr.repository_urls
}

output "registry" {
  description = "ECR registry host (images.yml pushes there; BASE_REGISTRY is <registry>/ecr-public)."
  value       = module.ecr.registry
}

output "job_queue_arns" {
  description = "Batch job queue ARN by queue name."
  value       = module.batch.job_queue_arns
}

output "job_definition_arns" {
  description = "Per workflow: job definition ARN by <job>[_<size_class>]."
  value       = module.batch.job_definition_arns
}

output "file_systems" {
  description = "Per AZ: database and scratch FSx."
  value       = module.fsx.file_systems
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.monitoring.alarm_topic_arn
}
