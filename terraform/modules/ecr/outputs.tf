output "repository_urls" {
  description = "Repository URL by image name."
  value       = { for k, r in aws_ecr_repository.this : k => r.repository_url }
}

output "repository_arns" {
  description = "Repository ARN by image name."
  value       = { for k, r in aws_ecr_repository.this : k => r.arn }
}

output "registry" {
  description = "The account's registry host (<account>.dkr.ecr.<region>.amazonaws.com), the BASE_REGISTRY build argument's stem."
  value       = "${data.aws_caller_identity.current.account_id}.dkr.ecr.${data.aws_region.current.name}.amazonaws.com"
}

output "pull_through_prefixes" {
  description = "Pull-through cache prefixes: base images are <registry>/<prefix>/<upstream path>."
  value       = { for k, r in aws_ecr_pull_through_cache_rule.this : k => "${data.aws_caller_identity.current.account_id}.dkr.ecr.${data.aws_region.current.name}.amazonaws.com/${k}" }
}

output "repository_creation_role_arn" {
  description = "Role ECR assumes to create pull-through repositories from the creation template (null without cache rules)."
  value       = try(aws_iam_role.repository_creation[0].arn, null)
}
