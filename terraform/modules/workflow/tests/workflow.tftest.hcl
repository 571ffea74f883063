mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

variables {
  workflow_name = "fold"
  name          = "foldstack-dev-fold"
  job_spec_file = "../../../statemachines/fold/jobs.yaml"
  role_arn      = "arn:aws:iam::111111111111:role/foldstack-dev-state-machine"
  kms_key_arn   = "arn:aws:kms:eu-west-1:111111111111:key/0b6f7c8e-1111-4d2b-9a44-123456789abc"
  lambda_arns = {
    validate_input  = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-validate-input"
    stage_inputs    = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-stage-inputs"
    collect_outputs = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-collect-outputs"
    cleanup         = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-cleanup"
    msa_cache       = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-msa-cache"
    publish_batch   = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-publish-batch"
    plan_batches    = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-plan-batches"
  }
  queue_arns = {
    "cpu-spot"     = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cpu-spot"
    "cpu-ondemand" = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cpu-ondemand"
    "gpu-small"    = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-gpu-small"
    "gpu-medium"   = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-gpu-medium"
    "gpu-large"    = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-gpu-large"
  }
  job_definition_arns = {
    msa            = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-fold-msa:1"
    msa_gpu        = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-fold-msa_gpu:1"
    predict_small  = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-fold-predict-small:1"
    predict_medium = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-fold-predict-medium:1"
    predict_large  = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-fold-predict-large:1"
  }
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
