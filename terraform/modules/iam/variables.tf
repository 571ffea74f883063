variable "name_prefix" {
  description = "Prefix for role names, e.g. foldstack-dev."
  type        = string
}

variable "permissions_boundary_arn" {
  description = "Optional permissions boundary attached to every role."
  type        = string
  default     = null
}

variable "kms_key_arns" {
  description = "KMS keys the workloads encrypt/decrypt with (the stack key plus any data-lake keys)."
  type        = list(string)
}

variable "scratch_bucket_arn" {
  description = "ARN of the scratch bucket."
  type        = string
}

variable "database_bucket_arn" {
  description = "ARN of the database bucket."
  type        = string
}

variable "database_prefix" {
  description = "Key prefix of the databases (<name>/CURRENT, <name>/<version>/...) in the database bucket."
  type        = string
  default     = "db/"
}

variable "cache_prefix" {
  description = "Key prefix of the MSA cache in the database bucket."
  type        = string
  default     = "cache/"
}

variable "upload_prefix" {
  description = "Key prefix of client uploads in the scratch bucket."
  type        = string
  default     = "uploads/"
}

variable "data_lake_locations" {
  description = "Data-lake locations (from the storage module): bucket_arn, prefix without trailing slash, access read|write|read_write."
  type = map(object({
    bucket_arn = string
    prefix     = string
    access     = string
  }))
  default = {}
}

variable "job_roles" {
  description = "One job role per Batch step (keys = jobs.yaml job names). cache_access: none | read | read_write on the cache prefix (fold's MSA cache, cryoem's per-micrograph preprocessing cache). database_access: none | publish (get/put/delete objects and list under the database prefix, with the database bucket's KMS key: the refresh_databases jobs, since the DB FSx only imports the bucket). Everything else the steps need comes through FSx."
  type = map(object({
    cache_access    = optional(string, "none")
    database_access = optional(string, "none")
  }))

  validation {
    condition     = alltrue([for r in values(var.job_roles) : contains(["none", "read", "read_write"], r.cache_access)])
    error_message = "cache_access must be none, read or read_write."
  }

  validation {
    condition     = alltrue([for r in values(var.job_roles) : contains(["none", "publish"], r.database_access)])
    error_message = "database_access must be none or publish."
  }
}

variable "database_kms_key_arn" {
  description = "KMS key of the database bucket, for jobs with database_access = publish (null: the kms_key_arns)."
  type        = string
  default     = null
}

variable "lambda_roles" {
  description = "One role per Lambda function (keys = function logical names) with the S3 access it needs."
  type = map(object({
    log_group_arn  = string
    read_inputs    = optional(bool, false) # data-lake read locations + uploads
    read_cache     = optional(bool, false)
    write_cache    = optional(bool, false) # MSA cache fill (Collect Outputs)
    read_databases = optional(bool, false) # database versions (<name>/CURRENT) for the MSA cache key
    read_scratch   = optional(bool, false)
    write_scratch  = optional(bool, false)
    delete_scratch = optional(bool, false)
    write_outputs  = optional(bool, false) # data-lake write locations
    # Publish Batch: which instance type each Batch job ran on (cost estimate): Batch
    # DescribeJobs and ECS DescribeContainerInstances on the stack's Batch clusters
    describe_batch_instances = optional(bool, false)
  }))
}

variable "state_machine" {
  description = "What the state-machine role may touch: exact Batch queue and job-definition ARNs, Lambda function ARNs, and whether it reads the MSA cache directly (S3 SDK integration)."
  type = object({
    job_queue_arns      = list(string)
    job_definition_arns = list(string)
    lambda_arns         = list(string)
    read_cache          = optional(bool, true)
    # Distributed Map: start/track/stop its child executions; ItemReader reads the
    # batch manifest from scratch.
    distributed_map = optional(bool, true)
  })
}
