mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

variables {
  name_prefix       = "foldstack-dev"
  state_machine_arn = "arn:aws:states:eu-west-1:111111111111:stateMachine:foldstack-dev-fold"
  kms_key_arn       = "arn:aws:kms:eu-west-1:111111111111:key/0b6f7c8e-1111-4d2b-9a44-123456789abc"
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
    condition     = aws_cloudwatch_metric_alarm.this["sfn-ExecutionsFailed"].dimensions.StateMachineArn == var.state_machine_arn
    error_message = "Failed executions of our state machine raise an alarm."
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
    condition = toset(keys(aws_cloudwatch_metric_alarm.this)) == toset([
      "sfn-ExecutionsFailed", "sfn-ExecutionsTimedOut", "sfn-ExecutionsAborted", "batch-jobs-failed", "lambda-cleanup-errors",
    ]) && aws_cloudwatch_metric_alarm.this["lambda-cleanup-errors"].dimensions.FunctionName == "foldstack-dev-cleanup"
    error_message = "One alarm per failed-execution metric, one for failed Batch jobs, one per Lambda."
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
}
