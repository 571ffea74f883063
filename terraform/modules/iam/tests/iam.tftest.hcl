mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

variables {
  name_prefix         = "foldstack-dev"
  kms_key_arns        = ["arn:aws:kms:eu-west-1:111111111111:key/0b6f7c8e-1111-4d2b-9a44-123456789abc"]
  scratch_bucket_arn  = "arn:aws:s3:::foldstack-dev-scratch-111111111111-eu-west-1"
  database_bucket_arn = "arn:aws:s3:::foldstack-dev-database-111111111111-eu-west-1"
  data_lake_locations = {
    sequences = { bucket_arn = "arn:aws:s3:::example-datalake-dev", prefix = "sequences", access = "read" }
    results   = { bucket_arn = "arn:aws:s3:::example-datalake-dev", prefix = "structures", access = "read_write" }
  }
  database_kms_key_arn = "arn:aws:kms:eu-west-1:111111111111:key/0b6f7c8e-1111-4d2b-9a44-123456789abc"
  job_roles = {
    msa        = { cache_access = "read_write" }
    predict    = {}
    refresh_db = { database_access = "publish" }
  }
  lambda_roles = {
    validate_input  = { log_group_arn = "arn:aws:logs:eu-west-1:111111111111:log-group:/aws/lambda/foldstack-dev-validate-input", read_inputs = true, read_cache = true }
    stage_inputs    = { log_group_arn = "arn:aws:logs:eu-west-1:111111111111:log-group:/aws/lambda/foldstack-dev-stage-inputs", read_inputs = true, write_scratch = true }
    collect_outputs = { log_group_arn = "arn:aws:logs:eu-west-1:111111111111:log-group:/aws/lambda/foldstack-dev-collect-outputs", read_scratch = true, write_outputs = true }
    cleanup         = { log_group_arn = "arn:aws:logs:eu-west-1:111111111111:log-group:/aws/lambda/foldstack-dev-cleanup", read_scratch = true, delete_scratch = true }
    msa_cache       = { log_group_arn = "arn:aws:logs:eu-west-1:111111111111:log-group:/aws/lambda/foldstack-dev-msa-cache", read_cache = true, read_databases = true, write_scratch = true }
    publish_batch   = { log_group_arn = "arn:aws:logs:eu-west-1:111111111111:log-group:/aws/lambda/foldstack-dev-publish-batch", read_scratch = true, write_scratch = true, write_outputs = true, describe_batch_instances = true }
  }
  state_machine = {
    job_queue_arns = [
      "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cpu-spot",
      "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-gpu-small",
    ]
    job_definition_arns = [
      "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-fold-msa:1",
      "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-fold-predict-small:1",
    ]
    lambda_arns = ["arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-validate-input"]
  }
}

run "state_machine_role_is_scoped" {
  command = plan

  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_role_policy.state_machine.policy).Statement : s.Resource if contains(s.Action, "batch:SubmitJob")
    ])) == toset(concat(var.state_machine.job_queue_arns, var.state_machine.job_definition_arns))
    error_message = "batch:SubmitJob must be scoped to exactly our queues and job definitions."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.state_machine.policy).Statement :
      contains(["TrackBatchJobs", "ExecutionLogDelivery", "XRayTracing"], s.Sid) if s.Resource == "*"
    ])
    error_message = "Resource \"*\" is allowed only where AWS supports nothing narrower (DescribeJobs/TerminateJob, log delivery, X-Ray)."
  }

  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_role_policy.state_machine.policy).Statement : s.Action if s.Resource == "*"
      ])) == toset([
      "batch:DescribeJobs", "batch:TerminateJob",
      "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
      "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
    ])
    error_message = "Unexpected actions on Resource \"*\"."
  }

  assert {
    condition = one([
      for s in jsondecode(aws_iam_role_policy.state_machine.policy).Statement : s.Resource if contains(s.Action, "events:PutRule")
    ]) == "arn:aws:events:eu-west-1:111111111111:rule/StepFunctionsGetEventsForBatchJobsRule"
    error_message = "events permissions must be limited to the managed Batch .sync rule."
  }
}

run "no_wildcard_actions_anywhere" {
  command = plan

  assert {
    condition = alltrue(flatten([
      for doc in concat(
        [aws_iam_role_policy.state_machine.policy],
        [for p in aws_iam_role_policy.lambda : p.policy],
        [for p in aws_iam_role_policy.job : p.policy],
        ) : [
        for s in jsondecode(doc).Statement : [for a in s.Action : !strcontains(a, "*")]
      ]
    ]))
    error_message = "No policy may use a wildcard action."
  }
}

run "job_roles_are_distinct_and_minimal" {
  command = plan

  assert {
    condition     = length(aws_iam_role.job) == 3 && alltrue([for r in aws_iam_role.job : r.name != aws_iam_role.instance.name])
    error_message = "Each step gets its own job role, distinct from the instance role."
  }

  assert {
    condition     = !contains(keys(aws_iam_role_policy.job), "predict")
    error_message = "predict reads everything through FSx: its job role has no policy."
  }

  assert {
    condition = flatten([
      for s in jsondecode(aws_iam_role_policy.job["msa"].policy).Statement : s.Resource if s.Sid == "JobCacheReadWriteObjects"
    ]) == ["arn:aws:s3:::foldstack-dev-database-111111111111-eu-west-1/cache/*"]
    error_message = "msa may touch only the MSA cache prefix."
  }

  assert {
    condition     = strcontains(aws_iam_role.job["msa"].assume_role_policy, "ecs-tasks.amazonaws.com")
    error_message = "Job roles are assumed by ECS tasks."
  }
}

run "refresh_job_publishes_only_under_the_database_prefix" {
  command = plan

  assert {
    condition = toset([for s in jsondecode(aws_iam_role_policy.job["refresh_db"].policy).Statement : jsonencode(s)]) == toset([
      jsonencode({
        Sid      = "JobDatabasesPublishObjects"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
        Resource = ["arn:aws:s3:::foldstack-dev-database-111111111111-eu-west-1/db/*"]
      }),
      jsonencode({
        Sid       = "JobDatabasesPublishList0"
        Effect    = "Allow"
        Action    = ["s3:ListBucket"]
        Resource  = "arn:aws:s3:::foldstack-dev-database-111111111111-eu-west-1"
        Condition = { StringLike = { "s3:prefix" = ["db", "db/*"] } }
      }),
      jsonencode({
        Sid      = "UseDatabaseBucketKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = [var.database_kms_key_arn]
      }),
    ])
    error_message = "refresh_db gets exactly: Get/Put/DeleteObject on db/*, ListBucket limited to db/, and the database bucket's KMS key; nothing on the MSA cache, scratch or data lake."
  }

  assert {
    condition = !anytrue([
      for s in jsondecode(aws_iam_role_policy.job["msa"].policy).Statement : contains(s.Action, "s3:DeleteObject")
    ])
    error_message = "Only database publishers get s3:DeleteObject on the database bucket."
  }
}

run "database_access_is_validated" {
  command = plan

  variables {
    job_roles = { refresh_db = { database_access = "write_everything" } }
  }

  expect_failures = [var.job_roles]
}

run "lambda_roles_get_only_their_access" {
  command = plan

  assert {
    condition = contains(flatten([
      for s in jsondecode(aws_iam_role_policy.lambda["msa_cache"].policy).Statement : s.Resource if contains(s.Action, "s3:GetObject")
      ]), "arn:aws:s3:::foldstack-dev-database-111111111111-eu-west-1/db/*") && !anytrue([
      for s in jsondecode(aws_iam_role_policy.lambda["msa_cache"].policy).Statement : contains(s.Action, "s3:DeleteObject")
    ])
    error_message = "msa_cache reads database versions (db/ prefix) and deletes nothing."
  }

  assert {
    condition = length([
      for s in jsondecode(aws_iam_role_policy.state_machine.policy).Statement : s if s.Sid == "DistributedMapChildExecutions"
    ]) == 1
    error_message = "The state machine may start its Distributed Map child executions."
  }

  assert {
    condition = !anytrue([
      for s in jsondecode(aws_iam_role_policy.lambda["validate_input"].policy).Statement : contains(s.Action, "s3:PutObject")
    ])
    error_message = "validate_input writes nothing."
  }

  assert {
    condition = flatten([
      for s in jsondecode(aws_iam_role_policy.lambda["collect_outputs"].policy).Statement : s.Resource if s.Sid == "WriteOutputsObjects"
    ]) == ["arn:aws:s3:::example-datalake-dev/structures/*"]
    error_message = "collect_outputs may write only to the writable data-lake prefixes."
  }

  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_role_policy.lambda["stage_inputs"].policy).Statement : s.Resource if s.Sid == "ReadInputsObjects"
      ])) == toset([
      "arn:aws:s3:::example-datalake-dev/sequences/*",
      "arn:aws:s3:::example-datalake-dev/structures/*",
      "arn:aws:s3:::foldstack-dev-scratch-111111111111-eu-west-1/uploads/*",
    ])
    error_message = "stage_inputs reads only from the allowed input prefixes."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.lambda["stage_inputs"].policy).Statement :
      s.Condition.StringLike["s3:prefix"] == ["uploads", "uploads/*"] if s.Sid == "ReadInputsList2"
    ])
    error_message = "Listing is limited to the allowed prefix."
  }

  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.lambda["cleanup"].policy).Statement : s.Resource if s.Sid == "WriteOwnLogs"]) == "${var.lambda_roles.cleanup.log_group_arn}:*"
    error_message = "Lambdas write only to their own log group."
  }
}

run "permissions_boundary_applies_to_every_role" {
  command = plan

  variables {
    permissions_boundary_arn = "arn:aws:iam::111111111111:policy/platform-boundary"
  }

  assert {
    condition = alltrue(concat(
      [for r in aws_iam_role.job : r.permissions_boundary == var.permissions_boundary_arn],
      [for r in aws_iam_role.lambda : r.permissions_boundary == var.permissions_boundary_arn],
      [aws_iam_role.state_machine.permissions_boundary == var.permissions_boundary_arn,
        aws_iam_role.instance.permissions_boundary == var.permissions_boundary_arn,
      aws_iam_role.batch_service.permissions_boundary == var.permissions_boundary_arn],
    ))
    error_message = "The permissions boundary must be attached to every role."
  }
}

run "trust_policies_name_one_service_and_guard_against_confused_deputies" {
  command = plan

  assert {
    condition = alltrue([
      for doc in concat(
        [aws_iam_role.batch_service.assume_role_policy, aws_iam_role.state_machine.assume_role_policy],
        [for r in aws_iam_role.lambda : r.assume_role_policy], [for r in aws_iam_role.job : r.assume_role_policy],
      ) : length(jsondecode(doc).Statement) == 1 && jsondecode(doc).Statement[0].Condition.StringEquals["aws:SourceAccount"] != ""
    ])
    error_message = "Every service role except the EC2 instance role pins aws:SourceAccount."
  }

  assert {
    condition = (
      jsondecode(aws_iam_role.state_machine.assume_role_policy).Statement[0].Principal.Service == "states.amazonaws.com"
      && strcontains(jsondecode(aws_iam_role.state_machine.assume_role_policy).Statement[0].Condition.ArnLike["aws:SourceArn"], ":stateMachine:")
      && jsondecode(aws_iam_role.instance.assume_role_policy).Statement[0].Principal.Service == "ec2.amazonaws.com"
    )
    error_message = "The state machine role trusts only our state machines; the instance role trusts EC2."
  }
}

run "publish_batch_may_look_up_its_jobs_instances_and_nothing_more" {
  command = plan

  assert {
    condition = [
      for s in jsondecode(aws_iam_role_policy.lambda["publish_batch"].policy).Statement : s if s.Sid == "DescribeBatchJobs"
      ] == [{
        Sid = "DescribeBatchJobs", Effect = "Allow", Action = ["batch:DescribeJobs"], Resource = "*"
    }]
    error_message = "publish_batch gets batch:DescribeJobs alone on Resource \"*\" (AWS supports nothing narrower for it)."
  }

  assert {
    condition = [
      for s in jsondecode(aws_iam_role_policy.lambda["publish_batch"].policy).Statement : s if s.Sid == "DescribeBatchContainerInstances"
      ] == [{
        Sid       = "DescribeBatchContainerInstances"
        Effect    = "Allow"
        Action    = ["ecs:DescribeContainerInstances"]
        Resource  = "arn:aws:ecs:eu-west-1:111111111111:container-instance/foldstack-dev-*_Batch_*/*"
        Condition = { ArnLike = { "ecs:cluster" = "arn:aws:ecs:eu-west-1:111111111111:cluster/foldstack-dev-*_Batch_*" } }
    }]
    error_message = "ecs:DescribeContainerInstances only on this stack's Batch clusters (resource and ecs:cluster condition)."
  }

  assert {
    condition = alltrue([
      for k, p in aws_iam_role_policy.lambda : k == "publish_batch" || !anytrue([
        for s in jsondecode(p.policy).Statement : anytrue([for a in s.Action : startswith(a, "batch:") || startswith(a, "ecs:")])
      ])
    ])
    error_message = "Only publish_batch may describe Batch jobs or ECS container instances."
  }

  assert {
    condition = alltrue(flatten([
      for p in aws_iam_role_policy.lambda : [
        for s in jsondecode(p.policy).Statement : contains(["XRayTracing", "DescribeBatchJobs"], s.Sid) if s.Resource == "*"
      ]
    ]))
    error_message = "A Lambda role has Resource \"*\" only for X-Ray and batch:DescribeJobs."
  }
}
