variable "name_prefix" {
  description = "Prefix for every bucket and the KMS alias, e.g. foldstack-dev. Bucket names append the account id and region."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name_prefix))
    error_message = "name_prefix must be 3-31 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "data_lake_locations" {
  description = "Existing S3 locations (outside this stack) the workflow reads inputs from and/or writes results to, keyed by a logical name. prefix is a key prefix without leading slash (\"\" = whole bucket); kms_key_arn is the location's SSE-KMS key, if any."
  type = map(object({
    bucket      = string
    prefix      = optional(string, "")
    access      = optional(string, "read")
    kms_key_arn = optional(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for l in values(var.data_lake_locations) : contains(["read", "write", "read_write"], l.access)])
    error_message = "access must be one of read, write, read_write."
  }

  validation {
    condition     = alltrue([for l in values(var.data_lake_locations) : !startswith(l.prefix, "/") && !strcontains(l.prefix, "*")])
    error_message = "prefix must not start with / or contain wildcards."
  }
}

variable "scratch_expiration_days" {
  description = "Days after which scratch objects (run working sets and client uploads) expire."
  type        = number
  default     = 14

  validation {
    condition     = var.scratch_expiration_days >= 1
    error_message = "scratch_expiration_days must be at least 1."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days a noncurrent object version is kept in versioned buckets."
  type        = number
  default     = 30
}

variable "access_log_expiration_days" {
  description = "Days S3 server access logs are kept."
  type        = number
  default     = 365
}

variable "force_destroy" {
  description = "Allow destroying non-empty buckets (dev only)."
  type        = bool
  default     = false
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the KMS key is deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}
