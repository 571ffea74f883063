locals {
  function_names = { for k in keys(var.functions) : k => "${var.name_prefix}-${replace(k, "_", "-")}" }
}

resource "aws_lambda_layer_version" "deps" {
  count = var.dependency_layer_zip == null ? 0 : 1

  layer_name               = "${var.name_prefix}-deps"
  filename                 = var.dependency_layer_zip
  source_code_hash         = filebase64sha256(var.dependency_layer_zip)
  compatible_runtimes      = [var.runtime]
  compatible_architectures = [var.architecture]
}

# Created before the functions so the roles (iam module) can be scoped to them.
resource "aws_cloudwatch_log_group" "this" {
  for_each = var.functions

  name              = "/aws/lambda/${local.function_names[each.key]}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_lambda_function" "this" {
  for_each = var.functions

  #checkov:skip=CKV_AWS_117:The handlers only call S3 and KMS public endpoints; a VPC attachment would add ENIs and cold starts without reducing exposure.
  #checkov:skip=CKV_AWS_116:Invoked synchronously by Step Functions, which retries and catches errors; a DLQ applies only to asynchronous invocations.
  #checkov:skip=CKV_AWS_272:Packages are built deterministically in CI and deployed by Terraform from that same commit; code signing is not set up for this stack.
  function_name                  = local.function_names[each.key]
  description                    = each.value.description
  role                           = var.role_arns[each.key]
  runtime                        = var.runtime
  architectures                  = [var.architecture]
  handler                        = "handler.handler"
  filename                       = "${var.package_dir}/${each.key}.zip"
  source_code_hash               = filebase64sha256("${var.package_dir}/${each.key}.zip")
  memory_size                    = each.value.memory_size
  timeout                        = each.value.timeout
  reserved_concurrent_executions = each.value.reserved_concurrency
  kms_key_arn                    = var.kms_key_arn
  layers                         = concat([for l in aws_lambda_layer_version.deps : l.arn], var.layer_arns)

  environment {
    variables = var.environment
  }

  tracing_config {
    mode = var.tracing_mode
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.this[each.key].name
  }
}
