variable "environment" {
  description = "Environment name."
  type        = string
}

variable "region" {
  description = "AWS Region of the stack."
  type        = string
}

variable "allowed_account_ids" {
  description = "The only AWS account(s) this environment may be applied to."
  type        = list(string)

  validation {
    condition     = length(var.allowed_account_ids) > 0 && alltrue([for a in var.allowed_account_ids : can(regex("^[0-9]{12}$", a))])
    error_message = "allowed_account_ids must be 12-digit account ids."
  }
}

variable "tags" {
  description = "Extra default tags."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "Existing VPC."
  type        = string
}

variable "subnets" {
  description = "Private subnets keyed by AZ, with their route tables."
  type = map(object({
    subnet_id      = string
    route_table_id = string
  }))
}

variable "data_lake_locations" {
  description = "S3 locations inputs come from / results go to."
  type = map(object({
    bucket      = string
    prefix      = optional(string, "")
    access      = optional(string, "read")
    kms_key_arn = optional(string)
  }))
}

variable "default_output_location" {
  description = "Key of data_lake_locations used as the default output."
  type        = string
}

variable "image_tag" {
  description = "Step image tag; CI passes the commit SHA (TF_VAR_image_tag)."
  type        = string
}

variable "compute_environments" {
  description = "Per-queue CE sizing overrides."
  type = map(object({
    max_vcpus      = number
    min_vcpus      = optional(number, 0)
    instance_types = optional(list(string))
  }))
  default = {}
}

variable "lambda_settings" {
  description = "Per-function Lambda overrides."
  type = map(object({
    memory_size          = optional(number)
    timeout              = optional(number)
    reserved_concurrency = optional(number)
  }))
  default = {}
}

variable "fsx" {
  description = "FSx sizing and protection."
  type = object({
    database_storage_capacity   = optional(number, 1200)
    scratch_storage_capacity    = optional(number, 1200)
    scratch_throughput_per_tib  = optional(number, 250)
    database_throughput_per_tib = optional(number, 125)
    backup_retention_days       = optional(number, 0)
    skip_final_backup           = optional(bool, true)
  })
  default = {}
}

variable "storage" {
  description = "Bucket behaviour."
  type = object({
    scratch_expiration_days = optional(number, 14)
    force_destroy           = optional(bool, false)
    kms_deletion_window     = optional(number, 30)
  })
  default = {}
}

variable "ecr_force_delete" {
  description = "Destroy deletes the step-image repositories with their images (true for disposable envs)."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Retention of every log group."
  type        = number
  default     = 30
}

variable "alarm_emails" {
  description = "Alarm subscribers."
  type        = set(string)
  default     = []
}

variable "permissions_boundary_arn" {
  description = "Optional permissions boundary."
  type        = string
  default     = null
}

variable "lambda_package_dir" {
  description = "Where `make build` put the Lambda zips (relative to this directory)."
  type        = string
  default     = "../../../build/lambdas"
}

variable "lambda_dependency_layer_zip" {
  description = "Layer zip with the handlers' third-party dependencies (make build-lambda-deps); null = none."
  type        = string
  default     = "../../../build/lambdas/layer-deps.zip"
}

variable "refresh_egress" {
  description = "Opt-in internet egress for the database refresh jobs only (see the platform module): mode none (default) | nat (+ subnets: AZ => subnet routed to your NAT gateway) | proxy (+ proxy_url, proxy_cidr, proxy_port). Fold compute never gets a route out."
  type = object({
    mode       = optional(string, "none")
    subnets    = optional(map(string), {})
    proxy_url  = optional(string)
    proxy_cidr = optional(string)
    proxy_port = optional(number, 3128)
  })
  default = {}
}
