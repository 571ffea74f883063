mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

# The zips come from `make build` (scripts/build_lambdas.py); the pytest wrapper builds
# them into its copy of the repository before running this.
variables {
  name_prefix = "foldstack-dev"
  package_dir = "../../../build/lambdas"
  kms_key_arn = "arn:aws:kms:eu-west-1:111111111111:key/0b6f7c8e-1111-4d2b-9a44-123456789abc"
  functions = {
    validate_input  = {}
    stage_inputs    = { timeout = 300 }
    collect_outputs = { timeout = 600, reserved_concurrency = 20 }
    cleanup         = {}
  }
  role_arns = {
    validate_input  = "arn:aws:iam::111111111111:role/foldstack-dev-lambda-validate-input"
    stage_inputs    = "arn:aws:iam::111111111111:role/foldstack-dev-lambda-stage-inputs"
    collect_outputs = "arn:aws:iam::111111111111:role/foldstack-dev-lambda-collect-outputs"
    cleanup         = "arn:aws:iam::111111111111:role/foldstack-dev-lambda-cleanup"
  }
  environment = {
    FOLDSTACK_SCRATCH_ROOT            = "s3://foldstack-dev-scratch-111111111111-eu-west-1"
    FOLDSTACK_ALLOWED_INPUT_PREFIXES  = "s3://example-datalake-dev/sequences/"
    FOLDSTACK_ALLOWED_OUTPUT_PREFIXES = "s3://example-datalake-dev/structures/"
    FOLDSTACK_CACHE_ROOT              = "s3://foldstack-dev-database-111111111111-eu-west-1/cache"
    FOLDSTACK_LOG_LEVEL               = "INFO"
  }
}

run "functions_from_prebuilt_zips" {
  command = plan

  assert {
    condition = alltrue([for k, f in aws_lambda_function.this :
      f.filename == "../../../build/lambdas/${k}.zip" && f.source_code_hash == filebase64sha256("../../../build/lambdas/${k}.zip") &&
    f.handler == "handler.handler" && f.role == var.role_arns[k]]) && length(aws_lambda_function.this) == 4
    error_message = "Each function deploys its prebuilt zip with handler.handler and its own role."
  }

  assert {
    condition     = alltrue([for f in aws_lambda_function.this : one(f.tracing_config).mode == "Active" && f.kms_key_arn == var.kms_key_arn])
    error_message = "X-Ray tracing is active and the environment is KMS-encrypted."
  }

  assert {
    condition     = alltrue([for f in aws_lambda_function.this : one(f.environment).variables == var.environment])
    error_message = "Every function gets the FOLDSTACK_* environment."
  }

  assert {
    condition     = aws_lambda_function.this["collect_outputs"].reserved_concurrent_executions == 20 && aws_lambda_function.this["cleanup"].reserved_concurrent_executions == -1
    error_message = "Reserved concurrency is a per-function knob."
  }

  assert {
    condition     = alltrue([for k, g in aws_cloudwatch_log_group.this : g.retention_in_days == 30 && g.kms_key_id == var.kms_key_arn && g.name == "/aws/lambda/foldstack-dev-${replace(k, "_", "-")}"])
    error_message = "Log groups have retention and KMS."
  }
}
