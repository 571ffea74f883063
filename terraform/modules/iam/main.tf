data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  # Trust policies by the service that assumes the role, each with the confused-deputy
  # conditions that service supports (EC2, through the instance profile, takes none).
  source_account = { StringEquals = { "aws:SourceAccount" = local.account_id } }
  trust = {
    for service, extra in {
      "batch.amazonaws.com"  = { Condition = local.source_account }
      "ec2.amazonaws.com"    = {}
      "lambda.amazonaws.com" = { Condition = local.source_account }
      "ecs-tasks.amazonaws.com" = { Condition = merge(local.source_account, {
        ArnLike = { "aws:SourceArn" = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:*" }
      }) }
      "states.amazonaws.com" = { Condition = merge(local.source_account, {
        ArnLike = { "aws:SourceArn" = "arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${var.name_prefix}-*" }
      }) }
      } : service => jsonencode({
        Version   = "2012-10-17"
        Statement = [merge({ Effect = "Allow", Principal = { Service = service }, Action = "sts:AssumeRole" }, extra)]
    })
  }

  # S3 locations as {bucket_arn, prefix}; prefix "" = whole bucket.
  loc_cache   = { bucket_arn = var.database_bucket_arn, prefix = trimsuffix(var.cache_prefix, "/") }
  loc_dbs     = { bucket_arn = var.database_bucket_arn, prefix = trimsuffix(var.database_prefix, "/") }
  loc_uploads = { bucket_arn = var.scratch_bucket_arn, prefix = trimsuffix(var.upload_prefix, "/") }
  loc_scratch = { bucket_arn = var.scratch_bucket_arn, prefix = "" }
  lake_read   = [for k in sort(keys(var.data_lake_locations)) : var.data_lake_locations[k] if var.data_lake_locations[k].access != "write"]
  lake_write  = [for k in sort(keys(var.data_lake_locations)) : var.data_lake_locations[k] if var.data_lake_locations[k].access != "read"]

  kms_statement = jsonencode({
    Sid      = "UseStackKeys"
    Effect   = "Allow"
    Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
    Resource = var.kms_key_arns
  })
  # Publishing databases needs only the database bucket's key (multipart uploads to an
  # SSE-KMS bucket need GenerateDataKey and Decrypt).
  database_kms_statement = jsonencode({
    Sid      = "UseDatabaseBucketKey"
    Effect   = "Allow"
    Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
    Resource = var.database_kms_key_arn != null ? [var.database_kms_key_arn] : var.kms_key_arns
  })
  # Which instance type a Batch job ran on (Publish Batch, for the cost estimate; containers
  # cannot ask the instance metadata: the launch template's hop limit is 1).
  batch_instances_statements = [
    jsonencode({
      # batch:DescribeJobs supports no resource-level permissions: Resource "*" is the only
      # form AWS accepts. It is read-only (a job's status, queue and container instance).
      Sid      = "DescribeBatchJobs"
      Effect   = "Allow"
      Action   = ["batch:DescribeJobs"]
      Resource = "*"
    }),
    jsonencode({
      # Only the container instances of this stack's Batch clusters: a managed compute
      # environment's ECS cluster is "<CE name>_Batch_<uuid>", and every CE is named
      # "<name_prefix>-<queue>-..." (modules/batch); the ARN names the cluster (long format).
      Sid      = "DescribeBatchContainerInstances"
      Effect   = "Allow"
      Action   = ["ecs:DescribeContainerInstances"]
      Resource = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:container-instance/${var.name_prefix}-*_Batch_*/*"
      Condition = { ArnLike = {
        "ecs:cluster" = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:cluster/${var.name_prefix}-*_Batch_*"
      } }
    }),
  ]
  # X-Ray has no resource-level permissions: Resource "*" is the only form AWS supports.
  xray_statement = jsonencode({
    Sid      = "XRayTracing"
    Effect   = "Allow"
    Action   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    Resource = "*"
  })
}

# S3 statements per access kind, as JSON strings (statements differ in shape, and
# Terraform cannot choose between tuples of differently shaped objects): object actions
# on <bucket>/<prefix>/*, and ListBucket per location limited by an s3:prefix condition.
locals {
  s3_sets = {
    for name, spec in {
      job_cache_read       = { locs = [local.loc_cache], actions = ["s3:GetObject"] }
      job_cache_read_write = { locs = [local.loc_cache], actions = ["s3:GetObject", "s3:PutObject"] }
      # The refresh_databases jobs publish <db prefix>/<name>/<version>/..., then CURRENT,
      # and delete what a failed publish left (the DB FSx only imports the bucket).
      job_databases_publish = { locs = [local.loc_dbs], actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"] }
      read_inputs           = { locs = concat(local.lake_read, [local.loc_uploads]), actions = ["s3:GetObject"] }
      read_cache            = { locs = [local.loc_cache], actions = ["s3:GetObject"] }
      write_cache           = { locs = [local.loc_cache], actions = ["s3:PutObject"] }
      read_databases        = { locs = [local.loc_dbs], actions = ["s3:GetObject"] }
      read_scratch          = { locs = [local.loc_scratch], actions = ["s3:GetObject"] }
      write_scratch         = { locs = [local.loc_scratch], actions = ["s3:PutObject"] }
      delete_scratch        = { locs = [local.loc_scratch], actions = ["s3:DeleteObject"] }
      write_outputs         = { locs = local.lake_write, actions = ["s3:PutObject"] }
      } : name => concat(
      [for _ in range(length(spec.locs) > 0 ? 1 : 0) : jsonencode({
        Sid      = "${replace(title(replace(name, "_", " ")), " ", "")}Objects"
        Effect   = "Allow"
        Action   = spec.actions
        Resource = [for l in spec.locs : l.prefix == "" ? "${l.bucket_arn}/*" : "${l.bucket_arn}/${l.prefix}/*"]
      })],
      # Every listing the handlers do names a prefix (a run id, an input folder), so a
      # whole-bucket location still requires one ("*").
      [for i, l in spec.locs : jsonencode({
        Sid       = "${replace(title(replace(name, "_", " ")), " ", "")}List${i}"
        Effect    = "Allow"
        Action    = ["s3:ListBucket"]
        Resource  = l.bucket_arn
        Condition = { StringLike = { "s3:prefix" = l.prefix == "" ? ["*"] : [l.prefix, "${l.prefix}/*"] } }
      })],
    )
  }
}

# ------------------------------------------------------------------ Batch service

resource "aws_iam_role" "batch_service" {
  name                 = "${var.name_prefix}-batch-service"
  permissions_boundary = var.permissions_boundary_arn
  assume_role_policy   = local.trust["batch.amazonaws.com"]
}

resource "aws_iam_role_policy_attachment" "batch_service" {
  role       = aws_iam_role.batch_service.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSBatchServiceRole"
}

# ------------------------------------------------------------- compute instances

resource "aws_iam_role" "instance" {
  name                 = "${var.name_prefix}-batch-instance"
  permissions_boundary = var.permissions_boundary_arn
  assume_role_policy   = local.trust["ec2.amazonaws.com"]
}

# ECS agent: register with the cluster, pull images, ship awslogs.
resource "aws_iam_role_policy_attachment" "instance_ecs" {
  role       = aws_iam_role.instance.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name_prefix}-batch-instance"
  role = aws_iam_role.instance.name
}

# ------------------------------------------------------------------- job roles

resource "aws_iam_role" "job" {
  for_each = var.job_roles

  name                 = "${var.name_prefix}-job-${replace(each.key, "_", "-")}"
  permissions_boundary = var.permissions_boundary_arn
  assume_role_policy   = local.trust["ecs-tasks.amazonaws.com"]
}

resource "aws_iam_role_policy" "job" {
  for_each = { for k, r in var.job_roles : k => r if r.cache_access != "none" || r.database_access != "none" }

  name = "steps"
  role = aws_iam_role.job[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [for st in concat(
      each.value.cache_access != "none" ? concat(local.s3_sets["job_cache_${each.value.cache_access}"], [local.kms_statement]) : [],
      each.value.database_access == "publish" ? concat(local.s3_sets.job_databases_publish, [local.database_kms_statement]) : [],
    ) : jsondecode(st)]
  })
}

# --------------------------------------------------------------------- Lambdas

resource "aws_iam_role" "lambda" {
  for_each = var.lambda_roles

  name                 = "${var.name_prefix}-lambda-${replace(each.key, "_", "-")}"
  permissions_boundary = var.permissions_boundary_arn
  assume_role_policy   = local.trust["lambda.amazonaws.com"]
}

resource "aws_iam_role_policy" "lambda" {
  for_each = var.lambda_roles

  name = "handler"
  role = aws_iam_role.lambda[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [for st in concat(
      [jsonencode({
        Sid      = "WriteOwnLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = "${each.value.log_group_arn}:*"
      })],
      [local.xray_statement, local.kms_statement],
      each.value.read_inputs ? local.s3_sets.read_inputs : [],
      each.value.read_cache ? local.s3_sets.read_cache : [],
      each.value.write_cache ? local.s3_sets.write_cache : [],
      each.value.read_databases ? local.s3_sets.read_databases : [],
      each.value.read_scratch ? local.s3_sets.read_scratch : [],
      each.value.write_scratch ? local.s3_sets.write_scratch : [],
      each.value.delete_scratch ? local.s3_sets.delete_scratch : [],
      each.value.write_outputs ? local.s3_sets.write_outputs : [],
      each.value.describe_batch_instances ? local.batch_instances_statements : [],
    ) : jsondecode(st)]
  })
}

# --------------------------------------------------------------- state machine

resource "aws_iam_role" "state_machine" {
  name                 = "${var.name_prefix}-state-machine"
  permissions_boundary = var.permissions_boundary_arn
  assume_role_policy   = local.trust["states.amazonaws.com"]
}

locals {
  # A Distributed Map runs its items as child executions of the same state machine.
  distributed_map_statements = [
    jsonencode({
      Sid      = "DistributedMapChildExecutions"
      Effect   = "Allow"
      Action   = ["states:StartExecution"]
      Resource = "arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${var.name_prefix}-*"
    }),
    jsonencode({
      Sid      = "DistributedMapTrackChildren"
      Effect   = "Allow"
      Action   = ["states:DescribeExecution", "states:StopExecution"]
      Resource = "arn:${local.partition}:states:${local.region}:${local.account_id}:execution:${var.name_prefix}-*:*"
    }),
  ]

  state_machine_policy = {
    Version = "2012-10-17"
    Statement = [for st in concat(
      [for st in [
        {
          Sid      = "SubmitToOurQueuesAndJobDefinitions"
          Effect   = "Allow"
          Action   = ["batch:SubmitJob"]
          Resource = concat(var.state_machine.job_queue_arns, var.state_machine.job_definition_arns)
        },
        {
          # batch:DescribeJobs and batch:TerminateJob support no resource-level
          # permissions: Resource "*" is the only form AWS accepts.
          Sid      = "TrackBatchJobs"
          Effect   = "Allow"
          Action   = ["batch:DescribeJobs", "batch:TerminateJob"]
          Resource = "*"
        },
        {
          Sid      = "BatchSyncEventRule"
          Effect   = "Allow"
          Action   = ["events:PutTargets", "events:PutRule", "events:DescribeRule"]
          Resource = "arn:${local.partition}:events:${local.region}:${local.account_id}:rule/StepFunctionsGetEventsForBatchJobsRule"
        },
        {
          Sid      = "InvokeOurLambdas"
          Effect   = "Allow"
          Action   = ["lambda:InvokeFunction"]
          Resource = concat(var.state_machine.lambda_arns, [for a in var.state_machine.lambda_arns : "${a}:*"])
        },
        {
          # CloudWatch Logs vended-log delivery APIs support no resource-level
          # permissions: Resource "*" is the only form AWS accepts.
          Sid    = "ExecutionLogDelivery"
          Effect = "Allow"
          Action = [
            "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
            "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
          ]
          Resource = "*"
        },
      ] : jsonencode(st)],
      [local.xray_statement, local.kms_statement],
      var.state_machine.read_cache ? local.s3_sets.read_cache : [],
      var.state_machine.distributed_map ? local.distributed_map_statements : [],
      var.state_machine.distributed_map ? local.s3_sets.read_scratch : [],
    ) : jsondecode(st)]
  }
}

resource "aws_iam_role_policy" "state_machine" {
  name   = "workflow"
  role   = aws_iam_role.state_machine.id
  policy = jsonencode(local.state_machine_policy)
}
