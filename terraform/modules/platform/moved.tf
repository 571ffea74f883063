# The execution alarms were the client workflow's (fold) only, keyed sfn-<metric>; every
# workflow now gets its own, keyed sfn-<workflow>-<metric> (modules/monitoring). These keep
# fold's three in the state under their new keys. Their names change with the keys, and a
# CloudWatch alarm's name cannot be updated in place, so the first apply after this change
# still replaces them (their history restarts; nothing else is lost).
moved {
  from = module.monitoring.aws_cloudwatch_metric_alarm.this["sfn-ExecutionsFailed"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["sfn-fold-ExecutionsFailed"]
}

moved {
  from = module.monitoring.aws_cloudwatch_metric_alarm.this["sfn-ExecutionsTimedOut"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["sfn-fold-ExecutionsTimedOut"]
}

moved {
  from = module.monitoring.aws_cloudwatch_metric_alarm.this["sfn-ExecutionsAborted"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["sfn-fold-ExecutionsAborted"]
}
