variable "name_prefix" {
  description = "Repository name prefix, e.g. foldstack-dev (repositories are <prefix>/<image>)."
  type        = string
}

variable "repositories" {
  description = "One repository per step image, keyed by image name (the `image` of jobs.yaml)."
  type = map(object({
    keep_tagged_images   = optional(number, 50)
    expire_untagged_days = optional(number, 7)
    force_delete         = optional(bool, false)
  }))

  validation {
    condition     = alltrue([for k in keys(var.repositories) : can(regex("^[a-z0-9][a-z0-9_-]*$", k))])
    error_message = "Repository keys must be lowercase image names."
  }
}

variable "kms_key_arn" {
  description = "KMS key for image encryption."
  type        = string
}

variable "pull_through_cache_rules" {
  description = "ECR pull-through cache rules for base images, keyed by the local repository prefix (Dockerfiles use <registry>/<prefix>/<upstream path>). Registries that need credentials (Docker Hub, GHCR) take a Secrets Manager secret whose name starts with ecr-pullthroughcache/."
  type = map(object({
    upstream_registry_url = string
    credential_arn        = optional(string)
  }))
  default = {
    "ecr-public" = { upstream_registry_url = "public.ecr.aws" }
  }
}

variable "permissions_boundary_arn" {
  description = "Optional permissions boundary for the repository-creation role."
  type        = string
  default     = null
}
