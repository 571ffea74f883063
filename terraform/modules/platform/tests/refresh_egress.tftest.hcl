mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

variables {
  environment = "dev"
  vpc_id      = "vpc-0123456789abcdef0"
  subnets = {
    "eu-west-1a" = { subnet_id = "subnet-0aaaaaaaaaaaaaaa1", route_table_id = "rtb-0aaaaaaaaaaaaaaa1" }
    "eu-west-1b" = { subnet_id = "subnet-0bbbbbbbbbbbbbbb1", route_table_id = "rtb-0bbbbbbbbbbbbbbb1" }
  }
  # As terraform/envs/_shared builds it from statemachines/workloads.yaml.
  workflows = {
    fold = {
      definition_file = "../../../statemachines/rendered/fold.asl.json"
      job_spec_file   = "../../../statemachines/fold/jobs.yaml"
      submitted_by    = "client"
    }
    refresh_databases = {
      definition_file = "../../../statemachines/rendered/refresh_databases.asl.json"
      job_spec_file   = "../../../statemachines/refresh_databases/jobs.yaml"
      submitted_by    = "operator"
    }
    cryoem = {
      definition_file = "../../../statemachines/rendered/cryoem.asl.json"
      job_spec_file   = "../../../statemachines/cryoem/jobs.yaml"
      submitted_by    = "client"
    }
  }
  data_lake_locations = {
    sequences = { bucket = "example-datalake-dev", prefix = "sequences", access = "read" }
    results   = { bucket = "example-datalake-dev", prefix = "structures", access = "read_write" }
  }
  default_output_location = "results"
  lambda_package_dir      = "../../../build/lambdas"
  image_tag               = "0123456789abcdef0123456789abcdef01234567"
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
