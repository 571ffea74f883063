output "compute_security_group_id" {
  description = "Security group of the Batch compute instances."
  value       = aws_security_group.compute.id
}

output "fsx_security_group_id" {
  description = "Security group of the FSx for Lustre file systems."
  value       = aws_security_group.fsx.id
}

output "endpoints_security_group_id" {
  description = "Security group of the interface VPC endpoints."
  value       = aws_security_group.endpoints.id
}

output "subnet_ids" {
  description = "Private subnet ids, sorted by AZ."
  value       = local.subnet_ids
}

output "subnets" {
  description = "The subnets input, keyed by AZ (passed through for the fsx and batch modules)."
  value       = var.subnets
}

output "vpc_endpoint_ids" {
  description = "VPC endpoint ids by service."
  value       = merge({ for k, e in aws_vpc_endpoint.interface : k => e.id }, { for e in aws_vpc_endpoint.s3 : "s3" => e.id })
}

output "refresh_egress_security_group_id" {
  description = "Security group giving the refresh jobs egress (null when refresh_egress.mode is none)."
  value       = one(aws_security_group.refresh_egress[*].id)
}
