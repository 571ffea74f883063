# The EventBridge rule that runs Cleanup for stopped executions (cancel_cleanup.tf):
# its pattern, its target (the cleanup Lambda, through the input transformer that
# tests/client/test_retry.py renders against a real event shape) and the permission.

mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

# The deployed definition (the other inputs: terraform.tfvars here).
variables {
  definition_file = "../../../statemachines/rendered/fold.asl.json"
}

run "stopped_fold_executions_invoke_cleanup" {
  command = plan

  assert {
    condition = jsondecode(aws_cloudwatch_event_rule.stopped[0].event_pattern) == {
      source        = ["aws.states"]
      "detail-type" = ["Step Functions Execution Status Change"]
      detail = {
        status          = ["ABORTED", "TIMED_OUT"]
        stateMachineArn = [aws_sfn_state_machine.this.arn]
      }
    }
    error_message = "The rule matches ABORTED and TIMED_OUT status changes of this state machine only."
  }

  assert {
    condition     = aws_cloudwatch_event_target.cleanup[0].arn == var.lambda_arns["cleanup"] && aws_cloudwatch_event_target.cleanup[0].rule == aws_cloudwatch_event_rule.stopped[0].name
    error_message = "The rule's target is the cleanup Lambda."
  }

  assert {
    condition = one(aws_cloudwatch_event_target.cleanup[0].input_transformer).input_paths == tomap({
      name = "$.detail.name", status = "$.detail.status", stopped = "$.detail.stopDate"
    })
    error_message = "The transformer reads the execution name, status and stop time."
  }

  assert {
    condition = jsondecode(replace(replace(replace(one(aws_cloudwatch_event_target.cleanup[0].input_transformer).input_template,
      "<name>", "run-1-0123456789abcdef-a2"), "<status>", "ABORTED"), "<stopped>", "1551225151881")) == {
      workflow = "fold", execution_name = "run-1-0123456789abcdef-a2", status = "ABORTED", stopped_at = 1551225151881, failed = true
    }
    error_message = "Filled in, the template is the Cleanup event's EventBridge shape (foldstack.tasks.events.CleanupEvent), naming its workflow."
  }

  assert {
    condition     = aws_lambda_permission.cleanup_on_stop[0].principal == "events.amazonaws.com" && aws_lambda_permission.cleanup_on_stop[0].source_arn == aws_cloudwatch_event_rule.stopped[0].arn && aws_lambda_permission.cleanup_on_stop[0].function_name == var.lambda_arns["cleanup"] && aws_lambda_permission.cleanup_on_stop[0].action == "lambda:InvokeFunction"
    error_message = "EventBridge may invoke the cleanup Lambda, for this rule only."
  }

  assert {
    condition     = output.stop_cleanup_rule_arn == aws_cloudwatch_event_rule.stopped[0].arn
    error_message = "The rule's ARN is an output."
  }
}

run "a_workflow_without_the_cleanup_lambda_gets_no_rule" {
  command = plan

  variables {
    workflow_name       = "refresh_databases"
    name                = "foldstack-dev-refresh-databases"
    definition_file     = "../../../statemachines/rendered/refresh_databases.asl.json"
    job_spec_file       = "../../../statemachines/refresh_databases/jobs.yaml"
    queue_arns          = { "cpu-refresh" = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cpu-refresh" }
    extra_template_vars = { db_uri = "s3://foldstack-dev-databases/db" }
    job_definition_arns = {
      refresh_db         = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-refresh-db:1"
      refresh_db_cleanup = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-refresh-db-cleanup:1"
    }
  }

  assert {
    condition     = length(aws_cloudwatch_event_rule.stopped) == 0 && length(aws_lambda_permission.cleanup_on_stop) == 0 && output.stop_cleanup_rule_arn == null
    error_message = "Only a workflow whose definition invokes the cleanup Lambda is cleaned up after by it."
  }
}

run "a_cryoem_execution_is_cleaned_up_by_cryoem" {
  command = plan

  variables {
    workflow_name   = "cryoem"
    name            = "foldstack-dev-cryoem"
    definition_file = "../../../statemachines/rendered/cryoem.asl.json"
    job_spec_file   = "../../../statemachines/cryoem/jobs.yaml"
    queue_arns = {
      "cpu-spot"          = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cpu-spot"
      "cpu-ondemand"      = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cpu-ondemand"
      "cryoem-gpu-small"  = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cryoem-gpu-small"
      "cryoem-gpu-medium" = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cryoem-gpu-medium"
      "cryoem-gpu-large"  = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cryoem-gpu-large"
    }
    job_definition_arns = {
      cryoem_preprocess  = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-cryoem-preprocess:1"
      cryoem_curate      = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-cryoem-curate:1"
      cryoem_gpu_small   = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-cryoem-gpu-small:1"
      cryoem_gpu_medium  = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-cryoem-gpu-medium:1"
      cryoem_gpu_large   = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-cryoem-gpu-large:1"
      cryoem_postprocess = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-cryoem-postprocess:1"
    }
  }

  assert {
    condition = jsondecode(replace(replace(replace(one(aws_cloudwatch_event_target.cleanup[0].input_transformer).input_template,
    "<name>", "em-1-0123456789abcdef"), "<status>", "TIMED_OUT"), "<stopped>", "1551225151881")).workflow == "cryoem"
    error_message = "The shared cleanup Lambda dispatches a cryoem execution's stop to cryoem's cleanup (the event's workflow)."
  }
}

run "a_workflow_name_that_needs_escaping_is_refused" {
  command = plan

  variables {
    workflow_name = "fold\", \"x"
  }

  expect_failures = [var.workflow_name]
}

run "it_can_be_switched_off" {
  command = plan

  variables {
    cleanup_on_stop = false
  }

  assert {
    condition     = length(aws_cloudwatch_event_rule.stopped) == 0 && length(aws_cloudwatch_event_target.cleanup) == 0
    error_message = "cleanup_on_stop = false creates no rule."
  }
}
