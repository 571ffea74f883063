variable "environment" {
  description = "Environment name (dev, prod, …): names resources and the SSM path /foldstack/<environment>/."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,15}$", var.environment))
    error_message = "environment must be 1-16 lowercase letters, digits or hyphens."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name; defaults to foldstack-<environment>."
  type        = string
  default     = null
}

variable "vpc_id" {
  description = "Existing VPC the stack runs in."
  type        = string
}

variable "subnets" {
  description = "Existing private subnets keyed by AZ name, each with its route table. One FSx pair is created per AZ."
  type = map(object({
    subnet_id      = string
    route_table_id = string
  }))
}

variable "workflows" {
  description = "Workflows to deploy, keyed by workflow name (statemachines/workloads.yaml): the rendered ASL, its jobs.yaml and who starts it. The client ones are published in the SSM map `workflows`; client_workflow's state machine is also `state_machine_arn`."
  type = map(object({
    definition_file = string
    job_spec_file   = string
    submitted_by    = optional(string, "operator")
  }))

  validation {
    condition     = alltrue([for w in values(var.workflows) : contains(["client", "operator"], w.submitted_by)])
    error_message = "workflows: submitted_by must be client or operator."
  }
}

variable "client_workflow" {
  description = "Workflow whose state machine is SSM `state_machine_arn` (the default of clients that name no workflow)."
  type        = string
  default     = "fold"

  validation {
    condition     = contains(keys(var.workflows), var.client_workflow) && try(var.workflows[var.client_workflow].submitted_by, "") == "client"
    error_message = "client_workflow must be a key of workflows with submitted_by = client."
  }
}

variable "data_lake_locations" {
  description = "Existing S3 locations the workflow reads inputs from / writes results to (see the storage module)."
  type = map(object({
    bucket      = string
    prefix      = optional(string, "")
    access      = optional(string, "read")
    kms_key_arn = optional(string)
  }))
}

variable "default_output_location" {
  description = "Key of data_lake_locations (with write access) used as the default output URI."
  type        = string

  validation {
    condition     = contains(keys(var.data_lake_locations), var.default_output_location) && try(var.data_lake_locations[var.default_output_location].access, "read") != "read"
    error_message = "default_output_location must name a data_lake_locations entry with write or read_write access."
  }
}

variable "lambda_package_dir" {
  description = "Directory with the Lambda zips built by `make build` (build/lambdas)."
  type        = string
}

variable "lambda_dependency_layer_zip" {
  description = "layer-deps.zip built by `scripts/build_lambdas.py --deps` (third-party dependencies of the handlers); null = none."
  type        = string
  default     = null
}

variable "lambda_layer_arns" {
  description = "Lambda layers with third-party dependencies."
  type        = list(string)
  default     = []
}

variable "lambda_settings" {
  description = "Per-function overrides of memory, timeout and reserved concurrency (keys: validate_input, stage_inputs, publish_batch, collect_outputs, cleanup)."
  type = map(object({
    memory_size          = optional(number)
    timeout              = optional(number)
    reserved_concurrency = optional(number)
  }))
  default = {}

  validation {
    condition     = length(setsubtract(keys(var.lambda_settings), ["validate_input", "stage_inputs", "publish_batch", "collect_outputs", "cleanup"])) == 0
    error_message = "lambda_settings keys must be validate_input, stage_inputs, publish_batch, collect_outputs or cleanup."
  }
}

variable "lambda_log_level" {
  description = "FOLDSTACK_LOG_LEVEL of the Lambdas."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.lambda_log_level)
    error_message = "lambda_log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "image_tag" {
  description = "Tag of the step images (CI sets the commit SHA)."
  type        = string
}

variable "job_cache_access" {
  description = "Cache access (the database bucket's cache/ prefix) per Batch job (none | read | read_write); jobs not listed get none."
  type        = map(string)
  # msa_gpu: the GPU chain search fills the MSA cache; cryoem_preprocess: the per-micrograph preprocessing cache
  default = { msa = "read_write", msa_gpu = "read_write", cryoem_preprocess = "read_write" }
}

variable "compute_environments" {
  description = "Per-queue CE sizing overrides (see the batch module)."
  type = map(object({
    max_vcpus      = number
    min_vcpus      = optional(number, 0)
    instance_types = optional(list(string))
  }))
  default = {}
}

variable "default_max_vcpus" {
  description = "Max vCPUs of CEs without an override, by tier."
  type = object({
    cpu = optional(number, 256)
    gpu = optional(number, 64)
  })
  default = {}
}

variable "cpu_instance_types" {
  description = "CPU CE instance families."
  type        = list(string)
  default     = ["c6i", "c7i", "m6i", "m7i", "r6i", "r7i"]
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

variable "log_retention_days" {
  description = "Retention of every log group (Lambda, Batch, Step Functions)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts."
  }
}

variable "include_execution_data" {
  description = "Log Step Functions execution input/output."
  type        = bool
  default     = false
}

variable "extra_template_vars" {
  description = "Additional ASL placeholders per workflow (workflow => name => value)."
  type        = map(map(string))
  default     = {}
}

variable "alarm_emails" {
  description = "Addresses subscribed to the alarm topic."
  type        = set(string)
  default     = []
}

variable "permissions_boundary_arn" {
  description = "Optional permissions boundary for every role."
  type        = string
  default     = null
}

variable "pull_through_cache_rules" {
  description = "ECR pull-through cache rules for base images (see the ecr module)."
  type = map(object({
    upstream_registry_url = string
    credential_arn        = optional(string)
  }))
  default = {
    "ecr-public" = { upstream_registry_url = "public.ecr.aws" }
  }
}

variable "create_s3_gateway_endpoint" {
  description = "Create the S3 gateway endpoint (false when the VPC already has one)."
  type        = bool
  default     = true
}

variable "ecr_force_delete" {
  description = "Delete the step-image repositories with their images on destroy (disposable environments, like storage.force_destroy for buckets)."
  type        = bool
  default     = false
}

variable "refresh_egress" {
  description = "Opt-in internet egress for the database refresh jobs only (off by default; fold compute never gets it). mode = nat: the refresh queue's compute runs in `subnets` (AZ => subnet id, subnets you route to a NAT gateway, in the AZs of `subnets`) with HTTPS out; mode = proxy: it stays in the private subnets and may reach only proxy_cidr:proxy_port, and the refresh jobs get HTTPS_PROXY = proxy_url."
  type = object({
    mode       = optional(string, "none")
    subnets    = optional(map(string), {})
    proxy_url  = optional(string)
    proxy_cidr = optional(string)
    proxy_port = optional(number, 3128)
    queue      = optional(string, "cpu-refresh")
    jobs       = optional(list(string), ["refresh_db", "refresh_db_cleanup"])
  })
  default = {}

  validation {
    condition = (
      contains(["none", "nat", "proxy"], var.refresh_egress.mode)
      && (var.refresh_egress.mode != "nat" || length(var.refresh_egress.subnets) > 0)
      && (var.refresh_egress.mode != "proxy" || (can(regex("^https?://", var.refresh_egress.proxy_url)) && can(cidrhost(var.refresh_egress.proxy_cidr, 0))))
    )
    error_message = "refresh_egress: mode none | nat | proxy; nat needs subnets (AZ => subnet id routed to a NAT); proxy needs proxy_url and proxy_cidr."
  }
}
