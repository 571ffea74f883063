mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}


run "composes_the_whole_stack" {
  command = plan

  assert {
    condition = toset(keys(module.config.parameter_names)) == toset([
      "state_machine_arn", "workflows", "input_prefix", "allowed_input_prefixes", "output_prefix", "scratch_bucket",
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
      length(module.batch.job_definition_arns.fold) == 5
      && toset(keys(module.batch.job_queue_arns)) == toset(flatten([
        for w in var.workflows : keys(yamldecode(file(w.job_spec_file)).queues)
      ]))
    )
    error_message = "Job definitions and queues come from jobs.yaml: one queue per key of every workflow's queues."
  }

  assert {
    condition = (
      toset(keys(module.batch.job_definition_arns.refresh_databases)) == toset(["refresh_db", "refresh_db_cleanup"])
      && toset(keys(module.workflow)) == toset(keys(var.workflows))
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
    condition = toset(keys(module.ecr.repository_urls)) == toset(flatten([
      for w in var.workflows : [for j in values(yamldecode(file(w.job_spec_file)).jobs) : j.image]
    ])) && contains(keys(module.ecr.repository_urls), "cryoem-gpu")
    error_message = "One ECR repository per image of every workflow's jobs.yaml (cryoem-cpu and cryoem-gpu included)."
  }

  assert {
    condition = toset(keys(one(module.lambdas.functions_environment))) == toset([
      "FOLDSTACK_SCRATCH_ROOT", "FOLDSTACK_ALLOWED_INPUT_PREFIXES", "FOLDSTACK_ALLOWED_OUTPUT_PREFIXES", "FOLDSTACK_CACHE_ROOT", "FOLDSTACK_DB_ROOT", "FOLDSTACK_SIZE_CLASSES", "FOLDSTACK_SCRATCH_OWNER",
      "FOLDSTACK_LOG_LEVEL", "FOLDSTACK_GIT_COMMIT", "FOLDSTACK_INSTANCE_LOOKUP",
    ])
    error_message = "Lambdas get the FOLDSTACK_* environment."
  }

  assert {
    condition     = one(module.lambdas.functions_environment).FOLDSTACK_ALLOWED_OUTPUT_PREFIXES == "s3://example-datalake-dev/structures/"
    error_message = "Outputs may go only to writable data-lake prefixes."
  }
}

run "every_registered_workflow_deploys_and_clients_find_theirs" {
  command = plan

  assert {
    condition = alltrue([
      for wf, w in var.workflows : w.submitted_by == "client"
      ? module.config.workflows[wf] == module.workflow[wf].state_machine_arn
      : !contains(keys(module.config.workflows), wf)
    ]) && toset(keys(module.config.workflows)) == toset(["fold", "cryoem"])
    error_message = "SSM workflows maps every client workflow (fold, cryoem) to its state machine; operator workflows (refresh_databases) stay out."
  }

  assert {
    condition = (
      !strcontains(module.workflow["cryoem"].definition, "$${")
      && can(jsondecode(module.workflow["cryoem"].definition))
      && module.workflow["cryoem"].state_machine_name == "foldstack-dev-cryoem"
    )
    error_message = "The cryoem state machine deploys from its rendered ASL with every placeholder filled."
  }

  assert {
    condition = alltrue([
      for k in keys(module.batch.job_definition_arns.cryoem) : strcontains(file(var.workflows.cryoem.definition_file), "$${job_definition_${k}_arn}")
      ]) && toset(keys(module.batch.job_definition_arns.cryoem)) == toset(flatten([
        for job, j in yamldecode(file(var.workflows.cryoem.job_spec_file)).jobs :
        can(j.size_classes) ? [for c in keys(j.size_classes) : "${job}_${c}"] : [job]
    ]))
    error_message = "The cryoem state machine names every cryoem job definition (one per job, per size class for the GPU steps)."
  }

  assert {
    condition     = jsondecode(one(module.lambdas.functions_environment).FOLDSTACK_SIZE_CLASSES) == yamldecode(file(var.workflows[var.client_workflow].job_spec_file)).size_classes
    error_message = "FOLDSTACK_SIZE_CLASSES stays the default client workflow's (fold's) size classes (another workflow's come in its events)."
  }
}

run "every_workflow_is_alarmed_on_and_cleaned_up_after" {
  command = plan

  assert {
    condition = alltrue(flatten([for wf in keys(var.workflows) : [
      for m in ["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"] :
      contains(keys(module.monitoring.alarm_arns), "foldstack-dev-sfn-${replace(wf, "_", "-")}-${m}")
    ]]))
    error_message = "Every deployed workflow's state machine has its failed/timed-out/aborted execution alarms."
  }

  assert {
    condition = alltrue([for wf, w in var.workflows :
    (module.workflow[wf].stop_cleanup_rule_arn != null) == strcontains(file(w.definition_file), "$${lambda_cleanup_arn}")])
    error_message = "Each workflow that uses the cleanup Lambda (fold, cryoem) has its own stopped-execution rule."
  }
}

run "every_job_handed_a_cache_may_read_and_write_it" {
  command = plan

  assert {
    condition = alltrue(flatten([for wf, w in var.workflows : [
      for job, j in yamldecode(file(w.job_spec_file)).jobs :
      lookup(var.job_cache_access, job, "none") == "read_write" && contains(keys(module.iam.job_role_arns), job)
      if contains(try(j.command, []), "--cache")
    ]])) && lookup(var.job_cache_access, "cryoem_preprocess", "none") == "read_write"
    error_message = "Every job whose command takes --cache (fold's msa jobs, cryoem_preprocess) has a job role that reads and writes the cache/ prefix."
  }
}

run "client_workflow_must_be_submitted_by_clients" {
  command = plan

  variables {
    client_workflow = "refresh_databases"
  }

  expect_failures = [var.client_workflow]
}
