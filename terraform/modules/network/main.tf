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

# S3 is reached through a gateway endpoint, ours or one the VPC already has
# (create_s3_gateway_endpoint = false): either way its destination is the Region's
# AWS-managed S3 prefix list, so the rule does not depend on who made the endpoint.
data "aws_ec2_managed_prefix_list" "s3" {
  name = "com.amazonaws.${local.region}.s3"
}

resource "aws_vpc_security_group_egress_rule" "compute_https_s3" {
  security_group_id = aws_security_group.compute.id
  description       = "HTTPS to S3 through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = data.aws_ec2_managed_prefix_list.s3.id
}

moved {
  from = aws_vpc_security_group_egress_rule.compute_https_s3[0]
  to   = aws_vpc_security_group_egress_rule.compute_https_s3
}

# Lustre: compute -> FSx, and FSx with itself (servers talk to each other) and back to
# compute; FSx accepts Lustre only from the compute SG and from itself. One rule per flow
# and Lustre port range.
locals {
  lustre_flows = {
    ingress = {
      fsx_from_compute = { sg = aws_security_group.fsx.id, peer = aws_security_group.compute.id, what = "from Batch compute" }
      fsx_from_self    = { sg = aws_security_group.fsx.id, peer = aws_security_group.fsx.id, what = "between file-system servers" }
    }
    egress = {
      compute_to_fsx = { sg = aws_security_group.compute.id, peer = aws_security_group.fsx.id, what = "to FSx" }
      fsx_to_self    = { sg = aws_security_group.fsx.id, peer = aws_security_group.fsx.id, what = "between file-system servers" }
      fsx_to_compute = { sg = aws_security_group.fsx.id, peer = aws_security_group.compute.id, what = "replies to Batch compute" }
    }
  }
  # "<flow>/<port range>" => flow + ports
  lustre_rules = {
    for direction, flows in local.lustre_flows : direction => merge([
      for flow, f in flows : { for port, p in local.lustre_ports : "${flow}/${port}" => merge(f, p, { port = port }) }
    ]...)
  }
}

resource "aws_vpc_security_group_ingress_rule" "lustre" {
  for_each = local.lustre_rules.ingress

  security_group_id            = each.value.sg
  description                  = "Lustre ${each.value.port} ${each.value.what}"
  ip_protocol                  = "tcp"
  from_port                    = each.value.from
  to_port                      = each.value.to
  referenced_security_group_id = each.value.peer
}

resource "aws_vpc_security_group_egress_rule" "lustre" {
  for_each = local.lustre_rules.egress

  security_group_id            = each.value.sg
  description                  = "Lustre ${each.value.port} ${each.value.what}"
  ip_protocol                  = "tcp"
  from_port                    = each.value.from
  to_port                      = each.value.to
  referenced_security_group_id = each.value.peer
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

# ------------------------------------------------ egress for database refresh only

# Opt-in (refresh_egress.mode != "none"): a security group that the refresh_databases
# workflow's own queue adds to the compute SG, with one way out: HTTPS (nat: the refresh
# compute runs in subnets routed to a NAT gateway that you run) or the proxy only (proxy).
# No other compute environment carries it; tests/terraform/test_estate_invariants.py
# checks that. This module creates no gateway or route.
resource "aws_security_group" "refresh_egress" {
  #checkov:skip=CKV2_AWS_5:Attached outside this module, to the refresh queue's compute environment (batch module, via platform).
  count = var.refresh_egress.mode == "none" ? 0 : 1

  name_prefix = "${var.name_prefix}-refresh-egress-"
  description = "Internet egress of the database refresh jobs of ${var.name_prefix} (${var.refresh_egress.mode})"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "refresh_egress" {
  #checkov:skip=CKV_AWS_382:Opt-in HTTPS egress of the refresh jobs' own security group (nat mode), to fetch public databases.
  count = var.refresh_egress.mode == "none" ? 0 : 1

  security_group_id = aws_security_group.refresh_egress[0].id
  description       = var.refresh_egress.mode == "nat" ? "HTTPS to database publishers (through your NAT route)" : "The HTTPS proxy"
  ip_protocol       = "tcp"
  from_port         = var.refresh_egress.mode == "nat" ? 443 : var.refresh_egress.proxy_port
  to_port           = var.refresh_egress.mode == "nat" ? 443 : var.refresh_egress.proxy_port
  cidr_ipv4         = var.refresh_egress.mode == "nat" ? "0.0.0.0/0" : var.refresh_egress.proxy_cidr
}
