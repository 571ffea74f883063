output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}

output "alarm_arns" {
  description = "Alarm ARNs by name."
  value       = { for a in aws_cloudwatch_metric_alarm.this : a.alarm_name => a.arn }
}

output "dashboard_name" {
  description = "CloudWatch dashboard name."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}
