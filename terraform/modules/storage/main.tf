data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  # Layout inside the stack's own buckets (docs/architecture.md, storage layout). Run working sets live at the
  # root of the scratch bucket (<scratch>/<run_id>/...), client uploads under uploads/.
  database_prefix = "db/"
  cache_prefix    = "cache/"
  upload_prefix   = "uploads/"

  buckets = {
    scratch = {
      name       = "${var.name_prefix}-scratch-${local.account_id}-${local.region}"
      versioning = false # short-lived working data; every object is reproducible from inputs
      kms        = true
    }
    database = {
      name       = "${var.name_prefix}-database-${local.account_id}-${local.region}"
      versioning = true # sequence DBs, weights and the MSA cache are expensive to rebuild
      kms        = true
    }
    logs = {
      name       = "${var.name_prefix}-access-logs-${local.account_id}-${local.region}"
      versioning = false
      kms        = false # S3 server access logging cannot deliver to an SSE-KMS bucket
    }
  }

  data_lake = {
    for key, loc in var.data_lake_locations : key => merge(loc, {
      bucket_arn = "arn:${local.partition}:s3:::${loc.bucket}"
      prefix     = loc.prefix == "" ? "" : trimsuffix(loc.prefix, "/")
      uri        = loc.prefix == "" ? "s3://${loc.bucket}/" : "s3://${loc.bucket}/${trimsuffix(loc.prefix, "/")}/"
    })
  }
}

# ---------------------------------------------------------------------------- KMS

resource "aws_kms_key" "this" {
  description             = "${var.name_prefix}: buckets, FSx, ECR, logs, SNS, Lambda environment"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = jsonencode(local.key_policy)
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.this.key_id
}

locals {
  key_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        # Standard key policy: IAM policies of this account decide who uses the key.
        # In a key policy, Resource "*" means "this key".
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:*" }
        }
      },
      {
        # CloudWatch alarms and EventBridge publish to the KMS-encrypted SNS topic.
        Sid       = "AlarmAndEventPublishers"
        Effect    = "Allow"
        Principal = { Service = ["cloudwatch.amazonaws.com", "events.amazonaws.com"] }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
    ]
  }
}

# ------------------------------------------------------------------------ buckets

resource "aws_s3_bucket" "this" {
  for_each = local.buckets

  #checkov:skip=CKV_AWS_145:scratch and database use SSE-KMS (asserted by terraform test); the access-log bucket must use SSE-S3 because S3 server access logging cannot deliver to SSE-KMS buckets.
  #checkov:skip=CKV_AWS_19:Every bucket has default encryption (aws_s3_bucket_server_side_encryption_configuration.this, same for_each); checkov misreads the per-bucket algorithm choice.
  #checkov:skip=CKV_AWS_144:Cross-region replication is not wanted: scratch is disposable, databases are re-importable from their public sources, and results live in the data lake.
  #checkov:skip=CKV2_AWS_62:No consumer of S3 event notifications: FSx data repository associations import changes on their own.

  bucket        = each.value.name
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.buckets

  bucket                  = aws_s3_bucket.this[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = each.value.kms ? "aws:kms" : "AES256"
      kms_master_key_id = each.value.kms ? aws_kms_key.this.arn : null
    }
    bucket_key_enabled = each.value.kms
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = { for k, b in local.buckets : k => b if b.versioning }

  bucket = aws_s3_bucket.this[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_logging" "this" {
  for_each = { for k, b in local.buckets : k => b if k != "logs" }

  bucket        = aws_s3_bucket.this[each.key].id
  target_bucket = aws_s3_bucket.this["logs"].id
  target_prefix = "${each.key}/"

  # S3 checks the target bucket's policy (the S3ServerAccessLogs grant) when logging is
  # enabled: without this ordering PutBucketLogging races the policy and is refused.
  depends_on = [aws_s3_bucket_policy.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  dynamic "rule" {
    for_each = each.key == "scratch" ? [1] : []
    content {
      id     = "expire-scratch"
      status = "Enabled"
      filter {}
      expiration {
        days = var.scratch_expiration_days
      }
    }
  }

  dynamic "rule" {
    for_each = each.value.versioning ? [1] : []
    content {
      id     = "expire-noncurrent-versions"
      status = "Enabled"
      filter {}
      noncurrent_version_expiration {
        noncurrent_days = var.noncurrent_version_expiration_days
      }
    }
  }

  dynamic "rule" {
    for_each = each.key == "logs" ? [1] : []
    content {
      id     = "expire-access-logs"
      status = "Enabled"
      filter {}
      expiration {
        days = var.access_log_expiration_days
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_policy" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [{
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.this[each.key].arn, "${aws_s3_bucket.this[each.key].arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      }],
      each.key == "logs" ? [{
        Sid       = "S3ServerAccessLogs"
        Effect    = "Allow"
        Principal = { Service = "logging.s3.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.this[each.key].arn}/*"
        Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
      }] : []
    )
  })

  depends_on = [aws_s3_bucket_public_access_block.this]
}
