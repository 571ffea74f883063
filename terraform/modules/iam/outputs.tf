# The two ARNs a compute environment is created with carry their policy attachments:
# a CE created before AWSBatchServiceRole / the ECS instance policy is attached goes
# INVALID, and one destroyed after them cannot scale its instances down.
output "batch_service_role_arn" {
  description = "Role AWS Batch uses to manage compute environments (available once its managed policy is attached)."
  value       = aws_iam_role.batch_service.arn
  depends_on  = [aws_iam_role_policy_attachment.batch_service]
}

output "instance_role_arn" {
  description = "Role of the Batch compute instances (ECS agent)."
  value       = aws_iam_role.instance.arn
}

output "instance_profile_arn" {
  description = "Instance profile of the Batch compute instances (available once the ECS instance policy is attached)."
  value       = aws_iam_instance_profile.instance.arn
  depends_on  = [aws_iam_role_policy_attachment.instance_ecs]
}

output "job_role_arns" {
  description = "Job role ARN by step name (distinct from the instance role)."
  value       = { for k, r in aws_iam_role.job : k => r.arn }
}

output "lambda_role_arns" {
  description = "Lambda execution role ARN by function logical name."
  value       = { for k, r in aws_iam_role.lambda : k => r.arn }
}

output "state_machine_role_arn" {
  description = "Role the state machine runs as."
  value       = aws_iam_role.state_machine.arn
}

output "state_machine_policy" {
  description = "The state-machine role's policy document (JSON), for review and tests."
  value       = jsonencode(local.state_machine_policy)
}
