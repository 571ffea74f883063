data "aws_region" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

locals {
  region     = data.aws_region.current.name
  subnet_ids = [for az in sort(keys(var.subnets)) : var.subnets[az].subnet_id]
  # Lustre: 988 (LNet) and 1018-1023 (Lustre services), TCP.
  lustre_ports = { lnet = { from = 988, to = 988 }, services = { from = 1018, to = 1023 } }
}

# ------------------------------------------------------------- security groups

resource "aws_security_group" "compute" {
  #checkov:skip=CKV2_AWS_5:Attached outside this module, to the Batch compute environments (batch module, via platform).
  name_prefix = "${var.name_prefix}-compute-"
  description = "Batch compute instances of ${var.name_prefix}"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "fsx" {
  #checkov:skip=CKV2_AWS_5:Attached outside this module, to the FSx file systems (fsx module, via platform).
  name_prefix = "${var.name_prefix}-fsx-"
  description = "FSx for Lustre file systems of ${var.name_prefix}"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "endpoints" {
  name_prefix = "${var.name_prefix}-endpoints-"
  description = "Interface VPC endpoints of ${var.name_prefix}"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

# Compute -> endpoints (HTTPS), S3 (gateway prefix list) and FSx (Lustre). Nothing else:
# there is no internet route.
resource "aws_vpc_security_group_egress_rule" "compute_https_endpoints" {
  security_group_id            = aws_security_group.compute.id
  description                  = "HTTPS to the interface VPC endpoints"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.endpoints.id
}

resource "aws_vpc_security_group_egress_rule" "compute_https_s3" {
  count = var.create_s3_gateway_endpoint ? 1 : 0

  security_group_id = aws_security_group.compute.id
  description       = "HTTPS to S3 through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.s3[0].prefix_list_id
}

resource "aws_vpc_security_group_egress_rule" "compute_lustre" {
  for_each = local.lustre_ports

  security_group_id            = aws_security_group.compute.id
  description                  = "Lustre ${each.key} to FSx"
  ip_protocol                  = "tcp"
  from_port                    = each.value.from
  to_port                      = each.value.to
  referenced_security_group_id = aws_security_group.fsx.id
}

# FSx accepts Lustre only from the compute SG and from itself (servers talk to each other).
resource "aws_vpc_security_group_ingress_rule" "fsx_from_compute" {
  for_each = local.lustre_ports

  security_group_id            = aws_security_group.fsx.id
  description                  = "Lustre ${each.key} from Batch compute"
  ip_protocol                  = "tcp"
  from_port                    = each.value.from
  to_port                      = each.value.to
  referenced_security_group_id = aws_security_group.compute.id
}

resource "aws_vpc_security_group_ingress_rule" "fsx_from_self" {
  for_each = local.lustre_ports

  security_group_id            = aws_security_group.fsx.id
  description                  = "Lustre ${each.key} between file-system servers"
  ip_protocol                  = "tcp"
  from_port                    = each.value.from
  to_port                      = each.value.to
  referenced_security_group_id = aws_security_group.fsx.id
}

resource "aws_vpc_security_group_egress_rule" "fsx_to_self" {
  for_each = local.lustre_ports

  security_group_id            = aws_security_group.fsx.id
  description                  = "Lustre ${each.key} between file-system servers"
  ip_protocol                  = "tcp"
  from_port                    = each.value.from
  to_port                      = each.value.to
  referenced_security_group_id = aws_security_group.fsx.id
}

resource "aws_vpc_security_group_egress_rule" "fsx_to_compute" {
  for_each = local.lustre_ports

  security_group_id            = aws_security_group.fsx.id
  description                  = "Lustre ${each.key} replies to Batch compute"
  ip_protocol                  = "tcp"
  from_port                    = each.value.from
  to_port                      = each.value.to
  referenced_security_group_id = aws_security_group.compute.id
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_https" {
  security_group_id = aws_security_group.endpoints.id
  description       = "HTTPS from inside the VPC (Batch compute and AWS-managed ENIs)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

# ---------------------------------------------------------------- VPC endpoints

resource "aws_vpc_endpoint" "interface" {
  for_each = var.interface_endpoints

  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = local.subnet_ids
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true

  tags = { Name = "${var.name_prefix}-${each.key}" }
}

resource "aws_vpc_endpoint" "s3" {
  count = var.create_s3_gateway_endpoint ? 1 : 0

  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = distinct([for az in sort(keys(var.subnets)) : var.subnets[az].route_table_id])

  tags = { Name = "${var.name_prefix}-s3" }
}
