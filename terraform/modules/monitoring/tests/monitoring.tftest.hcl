mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

variables {
  name_prefix = "foldstack-dev"
  state_machine_arns = {
    fold              = "arn:aws:states:eu-west-1:111111111111:stateMachine:foldstack-dev-fold"
    cryoem            = "arn:aws:states:eu-west-1:111111111111:stateMachine:foldstack-dev-cryoem"
    refresh_databases = "arn:aws:states:eu-west-1:111111111111:stateMachine:foldstack-dev-refresh_databases"
  }
  kms_key_arn = "arn:aws:kms:eu-west-1:111111111111:key/0b6f7c8e-1111-4d2b-9a44-123456789abc"
  job_queue_arns = {
    "cpu-spot"  = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cpu-spot"
    "gpu-small" = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-gpu-small"
  }
  lambda_function_names = { cleanup = "foldstack-dev-cleanup" }
  alarm_emails          = ["oncall@example.com"]
}

run "alarms_on_failures" {
  command = plan

  assert {
    condition = alltrue(flatten([for wf, arn in var.state_machine_arns : [
      for m in ["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"] :
      aws_cloudwatch_metric_alarm.this["sfn-${replace(wf, "_", "-")}-${m}"].dimensions.StateMachineArn == arn &&
      aws_cloudwatch_metric_alarm.this["sfn-${replace(wf, "_", "-")}-${m}"].metric_name == m &&
      aws_cloudwatch_metric_alarm.this["sfn-${replace(wf, "_", "-")}-${m}"].namespace == "AWS/States"
    ]]))
    error_message = "Failed, timed-out and aborted executions of every workflow's state machine raise its own alarm."
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.this["sfn-refresh-databases-ExecutionsFailed"].alarm_name == "foldstack-dev-sfn-refresh-databases-ExecutionsFailed"
    error_message = "Alarm names are keyed by workflow (_ as -)."
  }

  assert {
    condition = jsondecode(aws_cloudwatch_event_rule.batch_failed.event_pattern).detail.status == ["FAILED"] && toset(
    jsondecode(aws_cloudwatch_event_rule.batch_failed.event_pattern).detail.jobQueue) == toset(values(var.job_queue_arns))
    error_message = "Failed Batch jobs on our queues are matched."
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.this["batch-jobs-failed"].metric_name == "TriggeredRules" && aws_cloudwatch_metric_alarm.this["batch-jobs-failed"].namespace == "AWS/Events"
    error_message = "Failed Batch jobs raise an alarm."
  }

  assert {
    condition     = aws_sns_topic.alarms.kms_master_key_id == var.kms_key_arn && length(aws_sns_topic_subscription.email) == 1
    error_message = "The alarm topic is encrypted and has the subscribers."
  }

  assert {
    condition = toset(keys(aws_cloudwatch_metric_alarm.this)) == setunion(
      toset(flatten([for wf in keys(var.state_machine_arns) : [
        for m in ["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"] : "sfn-${replace(wf, "_", "-")}-${m}"
      ]])),
      toset(["batch-jobs-failed"]),
      toset([for name in keys(var.lambda_function_names) : "lambda-${replace(name, "_", "-")}-errors"]),
    ) && length(aws_cloudwatch_metric_alarm.this) == 3 * length(var.state_machine_arns) + 1 + length(var.lambda_function_names) && aws_cloudwatch_metric_alarm.this["lambda-cleanup-errors"].dimensions.FunctionName == "foldstack-dev-cleanup"
    error_message = "One alarm per failed-execution metric and workflow, one for failed Batch jobs, one per Lambda."
  }

  assert {
    condition = alltrue([for k, a in aws_cloudwatch_metric_alarm.this :
    length(a.ok_actions) == (startswith(k, "sfn-") ? 1 : 0) && toset(a.alarm_actions) == toset([aws_sns_topic.alarms.arn])])
    error_message = "Every alarm notifies the topic; failed-execution alarms also notify when they clear."
  }

  assert {
    condition     = length(jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets) >= 3
    error_message = "A small dashboard exists."
  }

  assert {
    condition = toset([for m in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets[0].properties.metrics : m[3]]) == toset(values(var.state_machine_arns)) && toset([
    for m in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets[1].properties.metrics : m[3]]) == toset(values(var.state_machine_arns))
    error_message = "The execution widgets show every workflow's state machine."
  }
}

run "one_workflow_only_gets_its_own_alarms" {
  command = plan

  variables {
    state_machine_arns    = { fold = "arn:aws:states:eu-west-1:111111111111:stateMachine:foldstack-dev-fold" }
    lambda_function_names = {}
  }

  assert {
    condition     = toset(keys(aws_cloudwatch_metric_alarm.this)) == toset(["sfn-fold-ExecutionsFailed", "sfn-fold-ExecutionsTimedOut", "sfn-fold-ExecutionsAborted", "batch-jobs-failed"])
    error_message = "A single workflow gets its three execution alarms and the Batch one."
  }
}

run "no_state_machine_is_refused" {
  command = plan

  variables {
    state_machine_arns = {}
  }

  expect_failures = [var.state_machine_arns]
}
