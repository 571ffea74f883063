variable "environment" {
  description = "Environment name; parameters live under /foldstack/<environment>/."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,15}$", var.environment))
    error_message = "environment must be 1-16 lowercase letters, digits or hyphens."
  }
}

variable "state_machine_arn" {
  description = "ARN of the fold state machine."
  type        = string
}

variable "workflows" {
  description = "State machine ARN by workflow name, for the workflows users submit (workloads.yaml submitted_by: client)."
  type        = map(string)

  validation {
    condition     = alltrue([for arn in values(var.workflows) : can(regex("^arn:[a-z-]+:states:", arn))]) && contains(values(var.workflows), var.state_machine_arn)
    error_message = "workflows must map workflow names to state machine ARNs, state_machine_arn's among them."
  }
}

variable "input_prefix" {
  description = "s3:// prefix the client uploads local input files to."
  type        = string
}

variable "allowed_input_prefixes" {
  description = "s3:// prefixes inputs may come from."
  type        = list(string)

  validation {
    condition     = length(var.allowed_input_prefixes) > 0 && alltrue([for p in var.allowed_input_prefixes : startswith(p, "s3://") && !strcontains(p, ",")])
    error_message = "allowed_input_prefixes must be non-empty s3:// URIs without commas."
  }
}

variable "output_prefix" {
  description = "Default s3:// output URI for runs that do not name one."
  type        = string

  validation {
    condition     = startswith(var.output_prefix, "s3://")
    error_message = "output_prefix must be an s3:// URI."
  }
}

variable "scratch_bucket" {
  description = "Name of the scratch bucket."
  type        = string
}

variable "region" {
  description = "Region of the stack (clients connect there)."
  type        = string
}

variable "log_group_batch" {
  description = "CloudWatch log group of the Batch jobs."
  type        = string
}

variable "queues" {
  description = "Batch job queue ARN by logical queue name (cpu-spot, gpu-small, …)."
  type        = map(string)
}

variable "msa_cache_uri" {
  description = "s3:// URI of the MSA cache root."
  type        = string
}

variable "allowed_output_prefixes" {
  description = "s3:// prefixes outputs may be written to (what the Validate Input Lambda allows)."
  type        = list(string)

  validation {
    condition     = length(var.allowed_output_prefixes) > 0 && alltrue([for p in var.allowed_output_prefixes : startswith(p, "s3://") && !strcontains(p, ",")])
    error_message = "allowed_output_prefixes must be non-empty s3:// URIs without commas."
  }
}

variable "size_classes" {
  description = "GPU size classes of the default client workflow (fold), as in its jobs.yaml. A class declares its own bounds (fold: max_residues and max_chains; cryoem: max_box_px); unset ones are left out of the JSON."
  type = map(object({
    max_residues   = optional(number)
    max_chains     = optional(number)
    max_box_px     = optional(number)
    gpu_memory_gib = optional(number)
  }))
}

variable "db_uri" {
  description = "s3:// prefix of the sequence databases and model weights (checked by `foldstack doctor`)."
  type        = string
}
