variable "name" {
  description = "State machine name, e.g. foldstack-dev-fold."
  type        = string
}

variable "workflow_name" {
  description = "Workflow name of statemachines/workloads.yaml (fold, cryoem, …): the `workflow` of the events this module sends the shared Lambdas (cancel_cleanup.tf)."
  type        = string

  validation {
    # it is written into an EventBridge input template unescaped
    condition     = can(regex("^[a-z][a-z0-9_]*$", var.workflow_name))
    error_message = "workflow_name must be lowercase letters, digits and _ (a workloads.yaml key)."
  }
}

variable "definition_file" {
  description = "Rendered ASL with $${…} deploy-time placeholders (statemachines/rendered/<workflow>.asl.json)."
  type        = string
}

variable "job_spec_file" {
  description = "The workflow's jobs.yaml; its queues and jobs decide which placeholders must be filled."
  type        = string
}

variable "role_arn" {
  description = "Role the state machine runs as."
  type        = string
}

variable "lambda_arns" {
  description = "Lambda ARN by function logical name (validate_input, stage_inputs, collect_outputs, cleanup) -> $${lambda_<name>_arn}."
  type        = map(string)
}

variable "queue_arns" {
  description = "Batch job queue ARN by queue name of jobs.yaml -> $${queue_<name with - as _>_arn}."
  type        = map(string)
}

variable "job_definition_arns" {
  description = "Batch job definition ARN by <job> or <job>_<size_class> -> $${job_definition_<key>_arn}."
  type        = map(string)
}

variable "scratch_mount" {
  description = "Value of $${scratch_mount}."
  type        = string
  default     = "/fsx/scratch"
}

variable "db_mount" {
  description = "Value of $${db_mount}."
  type        = string
  default     = "/fsx/db"
}

variable "weights_dir" {
  description = "Value of $${weights_dir}."
  type        = string
  default     = "/fsx/db/weights"
}

variable "extra_template_vars" {
  description = "Additional placeholders for templatefile() (override the generated ones on conflict)."
  type        = map(string)
  default     = {}
}

variable "log_level" {
  description = "Execution log level."
  type        = string
  default     = "ALL"

  validation {
    condition     = contains(["ALL", "ERROR", "FATAL", "OFF"], var.log_level)
    error_message = "log_level must be ALL, ERROR, FATAL or OFF."
  }
}

variable "include_execution_data" {
  description = "Log execution input/output (may contain sequences: off by default)."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Retention of the execution log group."
  type        = number
  default     = 30
}

variable "kms_key_arn" {
  description = "KMS key for the log group."
  type        = string
}
