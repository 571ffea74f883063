mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

variables {
  name_prefix = "foldstack-dev"
  vpc_id      = "vpc-0123456789abcdef0"
  subnets = {
    "eu-west-1a" = { subnet_id = "subnet-0aaaaaaaaaaaaaaa1", route_table_id = "rtb-0aaaaaaaaaaaaaaa1" }
    "eu-west-1b" = { subnet_id = "subnet-0bbbbbbbbbbbbbbb1", route_table_id = "rtb-0bbbbbbbbbbbbbbb1" }
  }
}

run "lustre_only_from_compute" {
  command = plan

  override_resource {
    target          = aws_security_group.compute
    values          = { id = "sg-0c0c0c0c0c0c0c0c0" }
    override_during = plan
  }
  override_resource {
    target          = aws_security_group.fsx
    values          = { id = "sg-0f0f0f0f0f0f0f0f0" }
    override_during = plan
  }

  assert {
    condition = alltrue([
      for r in aws_vpc_security_group_ingress_rule.lustre :
      r.security_group_id == "sg-0f0f0f0f0f0f0f0f0" && contains(["sg-0c0c0c0c0c0c0c0c0", "sg-0f0f0f0f0f0f0f0f0"], r.referenced_security_group_id)
    ]) && length([for r in aws_vpc_security_group_ingress_rule.lustre : r if r.referenced_security_group_id == "sg-0c0c0c0c0c0c0c0c0"]) == 2
    error_message = "FSx accepts Lustre only from the compute SG (and itself)."
  }

  assert {
    condition     = toset([for k, r in aws_vpc_security_group_ingress_rule.lustre : "${r.from_port}-${r.to_port}" if startswith(k, "fsx_from_compute/")]) == toset(["988-988", "1018-1023"])
    error_message = "Lustre ports are 988 and 1018-1023."
  }
}

run "no_internet_route_needed" {
  command = plan

  assert {
    condition     = length(setsubtract(["ecr.api", "ecr.dkr", "logs", "ecs", "sts", "states", "batch", "kms"], keys(aws_vpc_endpoint.interface))) == 0
    error_message = "Interface endpoints for ECR, logs, ECS, STS, Step Functions, Batch and KMS are required."
  }

  assert {
    condition     = aws_vpc_endpoint.s3[0].vpc_endpoint_type == "Gateway" && toset(aws_vpc_endpoint.s3[0].route_table_ids) == toset(["rtb-0aaaaaaaaaaaaaaa1", "rtb-0bbbbbbbbbbbbbbb1"])
    error_message = "The S3 gateway endpoint serves every private route table."
  }

  assert {
    condition     = alltrue([for e in aws_vpc_endpoint.interface : e.private_dns_enabled && length(e.subnet_ids) == 2])
    error_message = "Interface endpoints use private DNS in every subnet."
  }
}

run "s3_egress_with_our_gateway_endpoint" {
  command = plan

  assert {
    condition     = aws_vpc_security_group_egress_rule.compute_https_s3.prefix_list_id == "pl-6da54004" && aws_vpc_security_group_egress_rule.compute_https_s3.from_port == 443
    error_message = "Compute reaches S3 (HTTPS) through the Region's S3 prefix list."
  }
}

# A VPC that already has an S3 gateway endpoint: we create none, and compute still has
# its only route to S3 (the AWS-managed prefix list the existing endpoint serves).
run "s3_egress_without_our_gateway_endpoint" {
  command = plan

  variables {
    create_s3_gateway_endpoint = false
  }

  assert {
    condition     = length(aws_vpc_endpoint.s3) == 0
    error_message = "No S3 gateway endpoint is created when the VPC has one."
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.compute_https_s3.prefix_list_id == "pl-6da54004" && aws_vpc_security_group_egress_rule.compute_https_s3.ip_protocol == "tcp" && aws_vpc_security_group_egress_rule.compute_https_s3.to_port == 443
    error_message = "The compute SG keeps its HTTPS egress to S3 with the endpoint setting off."
  }
}

run "refresh_egress_is_off_by_default" {
  command = plan

  assert {
    condition     = length(aws_security_group.refresh_egress) == 0 && length(aws_vpc_security_group_egress_rule.refresh_egress) == 0 && output.refresh_egress_security_group_id == null
    error_message = "Without refresh_egress nothing gets a way out."
  }
}

run "refresh_egress_nat_allows_https_out_of_its_own_group_only" {
  command = plan

  variables {
    refresh_egress = { mode = "nat" }
  }

  override_resource {
    target          = aws_security_group.refresh_egress
    values          = { id = "sg-0e0e0e0e0e0e0e0e0" }
    override_during = plan
  }

  assert {
    condition     = length(aws_vpc_security_group_egress_rule.refresh_egress) == 1 && aws_vpc_security_group_egress_rule.refresh_egress[0].security_group_id == "sg-0e0e0e0e0e0e0e0e0" && aws_vpc_security_group_egress_rule.refresh_egress[0].from_port == 443 && aws_vpc_security_group_egress_rule.refresh_egress[0].to_port == 443 && aws_vpc_security_group_egress_rule.refresh_egress[0].cidr_ipv4 == "0.0.0.0/0"
    error_message = "nat: HTTPS out, on the refresh egress group only."
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.compute_https_endpoints.cidr_ipv4 == null && aws_vpc_security_group_egress_rule.compute_https_s3.cidr_ipv4 == null
    error_message = "The compute group keeps no CIDR egress."
  }
}

run "refresh_egress_proxy_reaches_only_the_proxy" {
  command = plan

  variables {
    refresh_egress = { mode = "proxy", proxy_cidr = "10.0.5.10/32", proxy_port = 3128 }
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.refresh_egress[0].cidr_ipv4 == "10.0.5.10/32" && aws_vpc_security_group_egress_rule.refresh_egress[0].from_port == 3128
    error_message = "proxy: only the proxy's address and port."
  }
}
