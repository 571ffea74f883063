mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}


# Refresh egress through the whole stack (plan, mock provider). The network and batch
# modules' own tests check the security group's rule and that only the named queue's
# compute gets it; here: the platform's opt-in variable reaches the network module in each
# mode, and a mode missing what it needs is refused at plan time.
run "refresh_egress_off_by_default" {
  command = plan

  assert {
    condition     = module.network.refresh_egress_security_group_id == null
    error_message = "No egress group unless refresh_egress asks for one."
  }
}

run "refresh_egress_nat" {
  command = plan

  variables {
    refresh_egress = { mode = "nat", subnets = { "eu-west-1a" = "subnet-0eeeeeeeeeeeeeee1" } }
  }

  override_resource {
    target          = module.network.aws_security_group.refresh_egress
    values          = { id = "sg-0e0e0e0e0e0e0e0e0" }
    override_during = plan
  }

  assert {
    condition     = module.network.refresh_egress_security_group_id == "sg-0e0e0e0e0e0e0e0e0" && contains(keys(module.batch.job_queue_arns), "cpu-refresh")
    error_message = "nat: the network module makes the refresh egress group; the refresh queue exists to carry it."
  }
}

run "refresh_egress_proxy" {
  command = plan

  variables {
    refresh_egress = { mode = "proxy", proxy_url = "http://10.0.5.10:3128", proxy_cidr = "10.0.5.10/32" }
  }

  override_resource {
    target          = module.network.aws_security_group.refresh_egress
    values          = { id = "sg-0e0e0e0e0e0e0e0e0" }
    override_during = plan
  }

  assert {
    condition     = module.network.refresh_egress_security_group_id == "sg-0e0e0e0e0e0e0e0e0"
    error_message = "proxy: the network module makes the refresh egress group."
  }
}

run "refresh_egress_nat_without_subnets_is_refused" {
  command = plan

  variables {
    refresh_egress = { mode = "nat" }
  }

  expect_failures = [var.refresh_egress]
}

run "refresh_egress_proxy_without_its_url_is_refused" {
  command = plan

  variables {
    refresh_egress = { mode = "proxy", proxy_cidr = "10.0.5.10/32" }
  }

  expect_failures = [var.refresh_egress]
}
