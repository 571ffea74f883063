variable "name_prefix" {
  description = "Prefix for file-system Name tags, e.g. foldstack-dev."
  type        = string
}

variable "subnets" {
  description = "One private subnet per Availability Zone in use, keyed by AZ name. Each AZ gets a database cache and a scratch file system."
  type = map(object({
    subnet_id = string
  }))

  validation {
    condition     = length(var.subnets) >= 1
    error_message = "At least one AZ is required."
  }
}

variable "security_group_id" {
  description = "Security group of the file systems (Lustre ports only from the compute SG)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for data at rest."
  type        = string
}

variable "database_bucket" {
  description = "Name of the database bucket the DB cache imports from (never exported to)."
  type        = string
}

variable "database_prefix" {
  description = "Key prefix of the databases in the database bucket (e.g. db/)."
  type        = string
  default     = "db/"
}

variable "scratch_bucket" {
  description = "Name of the scratch bucket linked to the scratch file systems."
  type        = string
}

variable "file_systems" {
  description = "Sizing of the two file-system roles. storage_capacity in GiB (1200, 2400 or a multiple of 2400); throughput in MB/s/TiB (125, 250, 500, 1000)."
  type = object({
    database = optional(object({
      storage_capacity            = optional(number, 1200)
      per_unit_storage_throughput = optional(number, 125)
    }), {})
    scratch = optional(object({
      storage_capacity            = optional(number, 1200)
      per_unit_storage_throughput = optional(number, 250)
    }), {})
  })
  default = {}

  validation {
    condition = alltrue([
      for fs in [var.file_systems.database, var.file_systems.scratch] :
      (fs.storage_capacity == 1200 || fs.storage_capacity % 2400 == 0) && contains([125, 250, 500, 1000], fs.per_unit_storage_throughput)
    ])
    error_message = "storage_capacity must be 1200 or a multiple of 2400; per_unit_storage_throughput one of 125, 250, 500, 1000."
  }
}

variable "backup_retention_days" {
  description = "Automatic daily backups of the database cache (0 disables; scratch is never backed up)."
  type        = number
  default     = 0
}

variable "skip_final_backup" {
  description = "Skip the final backup of the database cache when it is destroyed (false in prod)."
  type        = bool
  default     = true
}

variable "squash_uid" {
  description = "UID:GID that root is squashed to on the database cache (containers never own it)."
  type        = string
  default     = "65534:65534"
}
