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
  workflows = {
    fold = {
      definition_file = "../../../statemachines/rendered/fold.asl.json"
      job_spec_file   = "../../../statemachines/fold/jobs.yaml"
    }
    refresh_databases = {
      definition_file = "../../../statemachines/rendered/refresh_databases.asl.json"
      job_spec_file   = "../../../statemachines/refresh_databases/jobs.yaml"
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

run "composes_the_whole_stack" {
  command = plan

  assert {
    condition = toset(keys(module.config.parameter_names)) == toset([
      "state_machine_arn", "input_prefix", "allowed_input_prefixes", "output_prefix", "scratch_bucket",
      "region", "log_group_batch", "queues", "msa_cache_uri", "allowed_output_prefixes", "size_classes", "db_uri",
    ]) && alltrue([for n in values(module.config.parameter_names) : startswith(n, "/foldstack/dev/")])
    error_message = "The client's SSM parameters are published under /foldstack/dev/."
  }

  assert {
    condition     = jsondecode(module.lambdas.functions_environment[0].FOLDSTACK_SIZE_CLASSES).small.max_residues > 0
    error_message = "The Lambdas get the workflow's size classes (TaskSettings requires FOLDSTACK_SIZE_CLASSES)."
  }

  assert {
    condition = (
      length(module.batch.job_definition_arns.fold) == 4
      && toset(keys(module.batch.job_queue_arns)) == toset(flatten([
        for w in var.workflows : keys(yamldecode(file(w.job_spec_file)).queues)
      ]))
    )
    error_message = "Job definitions and queues come from jobs.yaml: one queue per key of every workflow's queues."
  }

  assert {
    condition = (
      toset(keys(module.batch.job_definition_arns.refresh_databases)) == toset(["refresh_db", "refresh_db_cleanup"])
      && toset(keys(module.workflow)) == toset(["fold", "refresh_databases"])
      && contains(keys(module.batch.job_queue_arns), "cpu-refresh")
    )
    error_message = "A second workflow (refresh_databases) gets its own job definitions, state machine and queue (cpu-refresh, the only compute that may get egress)."
  }

  assert {
    condition = (
      jsondecode(module.workflow["refresh_databases"].definition).States.RefreshDatabases.ItemProcessor.States.FetchVerifyPublish.Parameters.Parameters.db == "s3://${module.storage.database_bucket}/db"
      && jsondecode(module.workflow["refresh_databases"].definition).States.CleanupOnFailure.Parameters.Parameters.db == "s3://${module.storage.database_bucket}/db"
    )
    error_message = "The refresh jobs publish to the database bucket prefix the DB FSx imports (the FSx mount is read-only to jobs)."
  }

  assert {
    condition     = length(module.fsx.file_systems) == 2
    error_message = "One FSx pair per AZ."
  }

  assert {
    condition     = toset(keys(module.ecr.repository_urls)) == toset(["msa", "predict"])
    error_message = "One ECR repository per image of jobs.yaml."
  }

  assert {
    condition = toset(keys(one(module.lambdas.functions_environment))) == toset([
      "FOLDSTACK_SCRATCH_ROOT", "FOLDSTACK_ALLOWED_INPUT_PREFIXES", "FOLDSTACK_ALLOWED_OUTPUT_PREFIXES", "FOLDSTACK_CACHE_ROOT", "FOLDSTACK_DB_ROOT", "FOLDSTACK_SIZE_CLASSES", "FOLDSTACK_SCRATCH_OWNER",
      "FOLDSTACK_LOG_LEVEL", "FOLDSTACK_GIT_COMMIT",
    ])
    error_message = "Lambdas get the FOLDSTACK_* environment."
  }

  assert {
    condition     = one(module.lambdas.functions_environment).FOLDSTACK_ALLOWED_OUTPUT_PREFIXES == "s3://example-datalake-dev/structures/"
    error_message = "Outputs may go only to writable data-lake prefixes."
  }
}
