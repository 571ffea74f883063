data "aws_region" "current" {}

locals {
  region = data.aws_region.current.name
  # The execution metrics of every deployed workflow's state machine, alarmed on alike.
  sfn_metrics = ["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"]
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = var.kms_key_arn
}

resource "aws_sns_topic_subscription" "email" {
  for_each = var.alarm_emails

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

resource "aws_sns_topic_policy" "alarms" {
  arn = aws_sns_topic.alarms.arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "CloudWatchAlarms"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alarms.arn
      },
      {
        Sid       = "FailedBatchJobEvents"
        Effect    = "Allow"
        Principal = { Service = "events.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alarms.arn
        Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.batch_failed.arn } }
      },
    ]
  })
}

# ------------------------------------------------------------ failed Batch jobs
# Batch publishes no failed-job metric: an EventBridge rule matches FAILED job state
# changes on our queues, notifies the topic, and its TriggeredRules metric drives the alarm.

resource "aws_cloudwatch_event_rule" "batch_failed" {
  name        = "${var.name_prefix}-batch-job-failed"
  description = "Batch jobs of ${var.name_prefix} that ended FAILED"
  event_pattern = jsonencode({
    source        = ["aws.batch"]
    "detail-type" = ["Batch Job State Change"]
    detail = {
      status   = ["FAILED"]
      jobQueue = values(var.job_queue_arns)
    }
  })
}

resource "aws_cloudwatch_event_target" "batch_failed" {
  rule = aws_cloudwatch_event_rule.batch_failed.name
  arn  = aws_sns_topic.alarms.arn
}

# ------------------------------------------------------------------ alarms
# One table: failed/timed-out/aborted executions of each workflow's state machine (keyed
# sfn-<workflow, _ as ->-<metric>; these also notify when they clear), failed Batch jobs
# (the rule above) and errors of each Lambda. Alarm when >= threshold.

locals {
  alarms = merge(
    merge([for wf, arn in var.state_machine_arns : { for metric in local.sfn_metrics : "sfn-${replace(wf, "_", "-")}-${metric}" => {
      description = "Step Functions ${metric} of workflow ${wf} (${arn})"
      namespace   = "AWS/States"
      metric      = metric
      dimensions  = tomap({ StateMachineArn = arn })
      threshold   = var.alarms.failed_executions
      notify_ok   = true
    } }]...),
    { "batch-jobs-failed" = {
      description = "Batch jobs of ${var.name_prefix} failed (after all retries)"
      namespace   = "AWS/Events"
      metric      = "TriggeredRules"
      dimensions  = tomap({ RuleName = aws_cloudwatch_event_rule.batch_failed.name })
      threshold   = var.alarms.failed_batch_jobs
      notify_ok   = false
    } },
    { for name, function in var.lambda_function_names : "lambda-${replace(name, "_", "-")}-errors" => {
      description = "Errors of Lambda ${function}"
      namespace   = "AWS/Lambda"
      metric      = "Errors"
      dimensions  = tomap({ FunctionName = function })
      threshold   = var.alarms.lambda_errors
      notify_ok   = false
    } },
  )
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each = local.alarms

  alarm_name          = "${var.name_prefix}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = "Sum"
  period              = var.alarms.period_seconds
  evaluation_periods  = var.alarms.evaluation_periods
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = each.value.notify_ok ? [aws_sns_topic.alarms.arn] : []
}

# ------------------------------------------------------------------ dashboard

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name_prefix
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Executions"
          region = local.region
          stat   = "Sum"
          period = 300
          # concat, not flatten: each metric is itself a list
          metrics = concat([for wf, arn in var.state_machine_arns : [
            for m in ["ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut"] :
            ["AWS/States", m, "StateMachineArn", arn, { label = "${wf} ${m}" }]
          ]]...)
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title  = "Execution time (p50, p90)"
          region = local.region
          period = 300
          metrics = concat([for wf, arn in var.state_machine_arns : [
            for stat in ["p50", "p90"] : ["AWS/States", "ExecutionTime", "StateMachineArn", arn, { stat = stat, label = "${wf} ${stat}" }]
          ]]...)
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title   = "Failed Batch jobs"
          region  = local.region
          stat    = "Sum"
          period  = 300
          metrics = [["AWS/Events", "TriggeredRules", "RuleName", aws_cloudwatch_event_rule.batch_failed.name]]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title   = "Lambda errors"
          region  = local.region
          stat    = "Sum"
          period  = 300
          metrics = [for k, fn in var.lambda_function_names : ["AWS/Lambda", "Errors", "FunctionName", fn]]
        }
      },
    ]
  })
}
