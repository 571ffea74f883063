mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}


run "fixture_definition_is_filled" {
  command = plan

  variables {
    definition_file = "../../../tests/terraform/fixtures/fold.asl.json"
  }

  assert {
    condition     = !strcontains(aws_sfn_state_machine.this.definition, "$${") && can(jsondecode(aws_sfn_state_machine.this.definition))
    error_message = "Every placeholder is filled and the result is JSON."
  }

  assert {
    condition     = jsondecode(aws_sfn_state_machine.this.definition).States.PredictSmall.Parameters.JobQueue == var.queue_arns["gpu-small"]
    error_message = "Queue placeholders map to the queue ARNs."
  }

  assert {
    condition     = aws_sfn_state_machine.this.type == "STANDARD" && one(aws_sfn_state_machine.this.tracing_configuration).enabled && one(aws_sfn_state_machine.this.logging_configuration).level == "ALL" && !one(aws_sfn_state_machine.this.logging_configuration).include_execution_data
    error_message = "Standard type, tracing on, ALL logging without execution data by default."
  }

  assert {
    condition = length(setsubtract([
      "partition", "scratch_mount", "db_mount", "weights_dir",
      "lambda_validate_input_arn", "lambda_stage_inputs_arn", "lambda_collect_outputs_arn", "lambda_cleanup_arn",
      "queue_cpu_spot_arn", "queue_cpu_ondemand_arn", "queue_gpu_small_arn", "queue_gpu_medium_arn", "queue_gpu_large_arn",
      "job_definition_msa_arn", "job_definition_predict_small_arn", "job_definition_predict_medium_arn", "job_definition_predict_large_arn",
    ], output.template_variable_names)) == 0
    error_message = "Every documented placeholder is passed to templatefile()."
  }
}

run "rendered_definition_is_filled" {
  command = plan

  variables {
    definition_file = "../../../statemachines/rendered/fold.asl.json"
  }

  assert {
    condition     = !strcontains(aws_sfn_state_machine.this.definition, "$${") && can(jsondecode(aws_sfn_state_machine.this.definition))
    error_message = "The real rendered ASL deploys with every placeholder filled."
  }

  assert {
    condition     = strcontains(aws_sfn_state_machine.this.definition, var.lambda_arns["msa_cache"]) && strcontains(aws_sfn_state_machine.this.definition, var.lambda_arns["plan_batches"]) && strcontains(aws_sfn_state_machine.this.definition, var.queue_arns["cpu-ondemand"])
    error_message = "The MSA cache and Plan Batches Lambdas and the on-demand fallback queue are wired in."
  }
}

run "extra_template_vars_are_passed" {
  command = plan

  variables {
    definition_file     = "../../../tests/terraform/fixtures/fold.asl.json"
    extra_template_vars = { weights_dir = "/fsx/db/weights-v2" }
  }

  assert {
    condition     = strcontains(aws_sfn_state_machine.this.definition, "/fsx/db/weights-v2")
    error_message = "extra_template_vars reach (and may override) the template."
  }
}

run "missing_job_definition_is_refused" {
  command = plan

  variables {
    definition_file     = "../../../tests/terraform/fixtures/fold.asl.json"
    job_definition_arns = { msa = "arn:aws:batch:eu-west-1:111111111111:job-definition/x:1" }
    extra_template_vars = {
      job_definition_predict_small_arn  = "x"
      job_definition_predict_medium_arn = "x"
      job_definition_predict_large_arn  = "x"
    }
  }

  expect_failures = [aws_sfn_state_machine.this]
}
