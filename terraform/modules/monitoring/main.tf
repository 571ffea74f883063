data "aws_region" "current" {}

locals {
  region         = data.aws_region.current.name
  sfn_dimensions = { StateMachineArn = var.state_machine_arn }
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

# --------------------------------------------------------- failed executions

resource "aws_cloudwatch_metric_alarm" "executions_failed" {
  for_each = toset(["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"])

  alarm_name          = "${var.name_prefix}-sfn-${each.key}"
  alarm_description   = "Step Functions ${each.key} for ${var.state_machine_arn}"
  namespace           = "AWS/States"
  metric_name         = each.key
  dimensions          = local.sfn_dimensions
  statistic           = "Sum"
  period              = var.alarms.period_seconds
  evaluation_periods  = var.alarms.evaluation_periods
  threshold           = var.alarms.failed_executions
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
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

resource "aws_cloudwatch_metric_alarm" "batch_failed" {
  alarm_name          = "${var.name_prefix}-batch-jobs-failed"
  alarm_description   = "Batch jobs of ${var.name_prefix} failed (after all retries)"
  namespace           = "AWS/Events"
  metric_name         = "TriggeredRules"
  dimensions          = { RuleName = aws_cloudwatch_event_rule.batch_failed.name }
  statistic           = "Sum"
  period              = var.alarms.period_seconds
  evaluation_periods  = var.alarms.evaluation_periods
  threshold           = var.alarms.failed_batch_jobs
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each = var.lambda_function_names

  alarm_name          = "${var.name_prefix}-lambda-${replace(each.key, "_", "-")}-errors"
  alarm_description   = "Errors of Lambda ${each.value}"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = var.alarms.period_seconds
  evaluation_periods  = var.alarms.evaluation_periods
  threshold           = var.alarms.lambda_errors
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
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
          metrics = [
            for m in ["ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut"] :
            ["AWS/States", m, "StateMachineArn", var.state_machine_arn]
          ]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title   = "Execution time (p50, p90)"
          region  = local.region
          period  = 300
          metrics = [["AWS/States", "ExecutionTime", "StateMachineArn", var.state_machine_arn, { stat = "p50" }], ["...", { stat = "p90" }]]
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
