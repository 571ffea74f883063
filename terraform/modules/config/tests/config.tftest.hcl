mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

variables {
  environment       = "dev"
  state_machine_arn = "arn:aws:states:eu-west-1:111111111111:stateMachine:foldstack-dev-fold"
  workflows = {
    fold   = "arn:aws:states:eu-west-1:111111111111:stateMachine:foldstack-dev-fold"
    cryoem = "arn:aws:states:eu-west-1:111111111111:stateMachine:foldstack-dev-cryoem"
  }
  input_prefix           = "s3://foldstack-dev-scratch-111111111111-eu-west-1/uploads/"
  allowed_input_prefixes = ["s3://example-datalake-dev/sequences/", "s3://foldstack-dev-scratch-111111111111-eu-west-1/uploads/"]
  output_prefix          = "s3://example-datalake-dev/structures/"
  scratch_bucket         = "foldstack-dev-scratch-111111111111-eu-west-1"
  region                 = "eu-west-1"
  log_group_batch        = "/aws/batch/foldstack-dev"
  queues = {
    "cpu-spot"  = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cpu-spot"
    "gpu-small" = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-gpu-small"
  }
  msa_cache_uri           = "s3://foldstack-dev-database-111111111111-eu-west-1/cache"
  allowed_output_prefixes = ["s3://example-datalake-dev/structures/"]
  size_classes            = { small = { max_residues = 400, max_chains = 4, gpu_memory_gib = 24 } }
  db_uri                  = "s3://foldstack-dev-database-111111111111-eu-west-1/databases"
}

run "publishes_every_value_the_client_reads" {
  command = plan

  assert {
    condition = toset([for p in aws_ssm_parameter.this : p.name]) == toset([
      for n in ["state_machine_arn", "workflows", "input_prefix", "allowed_input_prefixes", "output_prefix", "scratch_bucket",
        "region", "log_group_batch", "queues", "msa_cache_uri", "allowed_output_prefixes", "size_classes",
      "db_uri"] : "/foldstack/dev/${n}"
    ])
    error_message = "SSM parameters must be exactly the names the client reads, under /foldstack/dev/."
  }

  assert {
    condition     = aws_ssm_parameter.this["allowed_input_prefixes"].type == "StringList"
    error_message = "allowed_input_prefixes must be a StringList."
  }

  assert {
    condition     = split(",", aws_ssm_parameter.this["allowed_input_prefixes"].value) == var.allowed_input_prefixes
    error_message = "allowed_input_prefixes must hold every prefix."
  }

  assert {
    condition     = tomap(jsondecode(aws_ssm_parameter.this["queues"].value)) == var.queues
    error_message = "queues must be a JSON map of logical name to ARN."
  }

  assert {
    condition     = jsondecode(aws_ssm_parameter.this["size_classes"].value) == { small = { max_residues = 400, max_chains = 4, gpu_memory_gib = 24 } }
    error_message = "size_classes must be the workflow's size classes as JSON."
  }

  assert {
    condition     = tomap(jsondecode(aws_ssm_parameter.this["workflows"].value)) == var.workflows && aws_ssm_parameter.this["workflows"].type == "String"
    error_message = "workflows must be a JSON map of client workflow name to state machine ARN."
  }

  assert {
    condition     = aws_ssm_parameter.this["state_machine_arn"].value == var.state_machine_arn
    error_message = "state_machine_arn must carry the state machine ARN."
  }
}

run "rejects_non_s3_output_prefix" {
  command = plan

  variables {
    output_prefix = "/local/path"
  }

  expect_failures = [var.output_prefix]
}

run "rejects_a_workflows_map_without_the_default_state_machine" {
  command = plan

  variables {
    workflows = { cryoem = "arn:aws:states:eu-west-1:111111111111:stateMachine:foldstack-dev-cryoem" }
  }

  expect_failures = [var.workflows]
}
