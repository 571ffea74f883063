variable "name_prefix" {
  description = "Prefix for function names, e.g. foldstack-dev (functions are <prefix>-<name with - for _>)."
  type        = string
}

variable "package_dir" {
  description = "Directory holding the deterministic zips built by `make build` (<name>.zip per function). Terraform never builds them."
  type        = string
}

variable "functions" {
  description = "Lambda functions keyed by the handler directory name under lambdas/."
  type = map(object({
    memory_size          = optional(number, 512)
    timeout              = optional(number, 60)
    reserved_concurrency = optional(number, -1) # -1 = unreserved
    description          = optional(string, "")
  }))

  validation {
    condition     = alltrue([for f in values(var.functions) : f.timeout >= 1 && f.timeout <= 900 && f.memory_size >= 128 && f.memory_size <= 10240])
    error_message = "timeout must be 1-900 s and memory_size 128-10240 MB."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.reserved_concurrency >= -1])
    error_message = "reserved_concurrency must be -1 (unreserved) or >= 0."
  }
}

variable "role_arns" {
  description = "Execution role ARN per function (from the iam module)."
  type        = map(string)
}

variable "environment" {
  description = "Environment variables every function gets (FOLDSTACK_SCRATCH_ROOT, FOLDSTACK_ALLOWED_INPUT_PREFIXES, …)."
  type        = map(string)
  default     = {}
}

variable "runtime" {
  description = "Lambda Python runtime."
  type        = string
  default     = "python3.12"
}

variable "architecture" {
  description = "Instruction set (the packages are pure Python)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be arm64 or x86_64."
  }
}

variable "layer_arns" {
  description = "Existing layers to attach to every function."
  type        = list(string)
  default     = []
}

variable "dependency_layer_zip" {
  description = "Zip of third-party dependencies (pydantic, …) built by `scripts/build_lambdas.py --deps` (layer-deps.zip); published as a layer and attached to every function. null = none."
  type        = string
  default     = null
}

variable "kms_key_arn" {
  description = "KMS key for log groups and environment variables."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the functions' log groups."
  type        = number
  default     = 30
}

variable "tracing_mode" {
  description = "X-Ray tracing mode."
  type        = string
  default     = "Active"
}
