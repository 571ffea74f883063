variable "name_prefix" {
  description = "Prefix for CEs, queues, job definitions, launch templates, e.g. foldstack-dev."
  type        = string
}

variable "job_spec_files" {
  description = "jobs.yaml per workflow (workflow name => path). Queues and job definitions are generated from them."
  type        = map(string)

  validation {
    condition     = length(var.job_spec_files) >= 1
    error_message = "At least one jobs.yaml is required."
  }
}

variable "subnets" {
  description = "Private subnets keyed by AZ; CEs span all of them."
  type = map(object({
    subnet_id = string
  }))
}

variable "security_group_ids" {
  description = "Security groups of the compute instances."
  type        = list(string)
}

variable "service_role_arn" {
  description = "AWS Batch service role."
  type        = string
}

variable "instance_profile_arn" {
  description = "Instance profile of the compute instances."
  type        = string
}

variable "job_role_arns" {
  description = "Job role per job name of jobs.yaml (distinct from the instance role)."
  type        = map(string)
}

variable "repository_urls" {
  description = "ECR repository URL per image name of jobs.yaml."
  type        = map(string)
}

variable "image_tag" {
  description = "Image tag every job definition runs (CI: the commit SHA the images were built from)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid, immutable tag (not latest)."
  }
}

variable "file_systems" {
  description = "Per AZ: database and scratch FSx (dns_name, mount_name), from the fsx module. Instances mount the pair of their own AZ."
  type = map(object({
    database = object({ dns_name = string, mount_name = string })
    scratch  = object({ dns_name = string, mount_name = string })
  }))
}

variable "kms_key_arn" {
  description = "KMS key for root volumes and the job log group."
  type        = string
}

variable "compute_environments" {
  description = "Per-queue sizing overrides, keyed by queue name of jobs.yaml (e.g. cpu-spot, gpu-small). Unset queues use default_max_vcpus and, for CPU, cpu_instance_types; GPU instance types come from jobs.yaml size classes."
  type = map(object({
    max_vcpus      = number
    min_vcpus      = optional(number, 0)
    instance_types = optional(list(string))
  }))
  default = {}

  validation {
    condition     = alltrue([for ce in values(var.compute_environments) : ce.max_vcpus >= ce.min_vcpus && ce.min_vcpus >= 0])
    error_message = "max_vcpus must be >= min_vcpus >= 0."
  }
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
  description = "Instance families/types of the CPU CEs (several families for Spot capacity)."
  type        = list(string)
  default     = ["c6i", "c7i", "m6i", "m7i", "r6i", "r7i"]

  validation {
    condition     = length(var.cpu_instance_types) >= 1
    error_message = "At least one CPU instance type is required."
  }
}

variable "root_volume_size_gib" {
  description = "Encrypted root volume size of compute instances, by tier (images live there)."
  type = object({
    cpu = optional(number, 100)
    gpu = optional(number, 200)
  })
  default = {}
}

variable "scratch_mount" {
  description = "Where instances and containers see the scratch file system."
  type        = string
  default     = "/fsx/scratch"
}

variable "db_mount" {
  description = "Where instances and containers see the database cache (read-only in containers)."
  type        = string
  default     = "/fsx/db"
}

variable "container_user" {
  description = "uid:gid the step containers run as (non-root; matches the images' user)."
  type        = string
  default     = "1000:1000"

  validation {
    condition     = can(regex("^[1-9][0-9]*:[0-9]+$", var.container_user))
    error_message = "container_user must be a non-root uid:gid."
  }
}

variable "tmpfs_mib" {
  description = "Size of the writable /tmp tmpfs in each job container (the root filesystem is read-only)."
  type        = number
  default     = 4096
}

variable "log_retention_days" {
  description = "Retention of the Batch job log group."
  type        = number
  default     = 30
}

variable "queue_network" {
  description = "Per-queue network additions, keyed by queue name of jobs.yaml: extra security groups and, optionally, other subnets (the refresh queue's opt-in egress). Queues not listed use security_group_ids and subnets only."
  type = map(object({
    security_group_ids = list(string)
    subnet_ids         = optional(list(string), [])
  }))
  default = {}
}

variable "job_environment" {
  description = "Extra container environment per job name of jobs.yaml (e.g. HTTPS_PROXY for refresh_db)."
  type        = map(map(string))
  default     = {}
}
