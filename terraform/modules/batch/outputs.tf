output "job_queue_arns" {
  description = "Job queue ARN by queue name of jobs.yaml."
  value       = { for k, q in aws_batch_job_queue.this : k => q.arn }
}

output "job_queue_names" {
  description = "Job queue name by queue name of jobs.yaml."
  value       = { for k, q in aws_batch_job_queue.this : k => q.name }
}

output "job_definition_arns" {
  description = "Per workflow: job definition ARN by <job> or <job>_<size_class>."
  value = {
    for wf in keys(var.job_spec_files) : wf => {
      for k, d in local.job_definitions : d.key => aws_batch_job_definition.this[k].arn if d.workflow == wf
    }
  }
}

output "job_definition_names" {
  description = "Per workflow: job definition name by <job> or <job>_<size_class>."
  value = {
    for wf in keys(var.job_spec_files) : wf => {
      for k, d in local.job_definitions : d.key => aws_batch_job_definition.this[k].name if d.workflow == wf
    }
  }
}

output "compute_environment_arns" {
  description = "Compute environment ARN by queue name."
  value       = { for k, ce in aws_batch_compute_environment.this : k => ce.arn }
}

output "launch_templates" {
  description = "Launch template id and pinned version by tier."
  value       = { for k, lt in aws_launch_template.this : k => { id = lt.id, version = lt.latest_version } }
}

output "log_group_name" {
  description = "CloudWatch log group of the Batch jobs."
  value       = aws_cloudwatch_log_group.jobs.name
}
