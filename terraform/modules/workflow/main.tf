data "aws_partition" "current" {}

locals {
  jobs = yamldecode(file(var.job_spec_file))

  # Every key jobs.yaml defines must have an ARN: templatefile() fails on any
  # placeholder without a value, and a silently missing queue is worse.
  expected_queues = toset(keys(local.jobs.queues))
  expected_job_definitions = toset(flatten([
    for job, j in local.jobs.jobs : can(j.size_classes) ? [for cls in keys(j.size_classes) : "${job}_${cls}"] : [job]
  ]))

  template_vars = merge(
    {
      partition     = data.aws_partition.current.partition
      scratch_mount = var.scratch_mount
      db_mount      = var.db_mount
      weights_dir   = var.weights_dir
    },
    { for name, arn in var.lambda_arns : "lambda_${name}_arn" => arn },
    { for q, arn in var.queue_arns : "queue_${replace(q, "-", "_")}_arn" => arn },
    { for k, arn in var.job_definition_arns : "job_definition_${replace(k, "-", "_")}_arn" => arn },
    var.extra_template_vars,
  )

  definition = templatefile(var.definition_file, local.template_vars)
}

resource "aws_cloudwatch_log_group" "this" {
  # Step Functions vended logs: the /aws/vendedlogs/ prefix keeps the log resource policy small.
  name              = "/aws/vendedlogs/states/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_sfn_state_machine" "this" {
  name       = var.name
  type       = "STANDARD" # .sync Batch integrations need Standard
  role_arn   = var.role_arn
  definition = local.definition

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.this.arn}:*"
    include_execution_data = var.include_execution_data
    level                  = var.log_level
  }

  tracing_configuration {
    enabled = true
  }

  lifecycle {
    precondition {
      condition     = length(setsubtract(local.expected_queues, keys(var.queue_arns))) == 0
      error_message = "queue_arns lacks queues defined in ${var.job_spec_file}: ${join(", ", setsubtract(local.expected_queues, keys(var.queue_arns)))}."
    }
    precondition {
      condition     = length(setsubtract(local.expected_job_definitions, keys(var.job_definition_arns))) == 0
      error_message = "job_definition_arns lacks job definitions defined in ${var.job_spec_file}: ${join(", ", setsubtract(local.expected_job_definitions, keys(var.job_definition_arns)))}."
    }
    precondition {
      condition     = length(setsubtract(["validate_input", "stage_inputs", "collect_outputs", "cleanup"], keys(var.lambda_arns))) == 0
      error_message = "lambda_arns must contain validate_input, stage_inputs, collect_outputs and cleanup (and every other lambda_<name>_arn the definition names)."
    }
  }
}
