variable "name_prefix" {
  description = "Prefix for the topic, alarms, rule and dashboard, e.g. foldstack-dev."
  type        = string
}

variable "state_machine_arns" {
  description = "State machines to alarm on, by workflow name (e.g. fold, cryoem): each gets its own failed/timed-out/aborted execution alarms."
  type        = map(string)

  validation {
    # the workflow name is part of alarm names and keys
    condition     = length(var.state_machine_arns) > 0 && alltrue([for wf in keys(var.state_machine_arns) : can(regex("^[a-z][a-z0-9_]*$", wf))])
    error_message = "state_machine_arns: at least one, keyed by workflow name (lowercase letters, digits, _)."
  }
}

variable "job_queue_arns" {
  description = "Batch job queues (name => ARN) whose failed jobs raise the alarm."
  type        = map(string)
}

variable "lambda_function_names" {
  description = "Lambda functions (logical name => function name) shown on the dashboard and alarmed on errors."
  type        = map(string)
  default     = {}
}

variable "kms_key_arn" {
  description = "KMS key of the SNS topic."
  type        = string
}

variable "alarm_emails" {
  description = "Addresses subscribed to the alarm topic (each must confirm)."
  type        = set(string)
  default     = []
}

variable "alarms" {
  description = "Alarm thresholds: failed executions / failed Batch jobs / Lambda errors per period (alarm when >= threshold)."
  type = object({
    period_seconds     = optional(number, 300)
    failed_executions  = optional(number, 1)
    failed_batch_jobs  = optional(number, 1)
    lambda_errors      = optional(number, 1)
    evaluation_periods = optional(number, 1)
  })
  default = {}
}
