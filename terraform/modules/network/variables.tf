variable "name_prefix" {
  description = "Prefix for security group names, e.g. foldstack-dev."
  type        = string
}

variable "vpc_id" {
  description = "Id of the existing VPC the stack runs in."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnets" {
  description = "Existing private subnets keyed by Availability Zone name (one per AZ in use), with the route table that serves each (for the S3 gateway endpoint)."
  type = map(object({
    subnet_id      = string
    route_table_id = string
  }))

  validation {
    condition     = length(var.subnets) >= 1 && alltrue([for az, s in var.subnets : can(regex("^[a-z]{2}(-[a-z]+)+-[0-9][a-z]$", az)) && startswith(s.subnet_id, "subnet-") && startswith(s.route_table_id, "rtb-")])
    error_message = "subnets must be keyed by AZ name (e.g. eu-west-1a) with subnet-… and rtb-… ids."
  }
}

variable "interface_endpoints" {
  description = "Interface VPC endpoint services (the part after com.amazonaws.<region>.) so compute needs no internet route."
  type        = set(string)
  default     = ["ecr.api", "ecr.dkr", "logs", "ecs", "ecs-agent", "ecs-telemetry", "sts", "states", "batch", "kms"]
}

variable "create_s3_gateway_endpoint" {
  description = "Create the S3 gateway endpoint (set false when the VPC already has one on these route tables)."
  type        = bool
  default     = true
}

variable "refresh_egress" {
  description = "Opt-in internet egress for the database refresh jobs only (their own security group; fold compute never gets it). mode = none (default), nat (HTTPS 443 out; the refresh compute runs in subnets you route to a NAT gateway) or proxy (only proxy_cidr:proxy_port)."
  type = object({
    mode       = optional(string, "none")
    proxy_cidr = optional(string)
    proxy_port = optional(number, 3128)
  })
  default = {}

  validation {
    condition     = contains(["none", "nat", "proxy"], var.refresh_egress.mode) && (var.refresh_egress.mode != "proxy" || can(cidrhost(var.refresh_egress.proxy_cidr, 0)))
    error_message = "refresh_egress.mode must be none, nat or proxy; proxy needs proxy_cidr (e.g. 10.0.0.10/32)."
  }
}
