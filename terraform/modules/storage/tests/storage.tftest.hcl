mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

variables {
  name_prefix = "foldstack-dev"
  data_lake_locations = {
    sequences = { bucket = "example-datalake-dev", prefix = "sequences/", access = "read" }
    results   = { bucket = "example-datalake-dev", prefix = "structures", access = "read_write" }
  }
}

run "every_bucket_is_encrypted_and_private" {
  command = plan

  assert {
    condition     = toset(keys(aws_s3_bucket.this)) == toset(["scratch", "database", "logs"])
    error_message = "Expected the scratch, database and access-log buckets."
  }

  assert {
    condition = alltrue([for k, b in aws_s3_bucket.this : contains(keys(aws_s3_bucket_public_access_block.this), k) && alltrue([
      aws_s3_bucket_public_access_block.this[k].block_public_acls, aws_s3_bucket_public_access_block.this[k].block_public_policy,
      aws_s3_bucket_public_access_block.this[k].ignore_public_acls, aws_s3_bucket_public_access_block.this[k].restrict_public_buckets,
    ])])
    error_message = "Every bucket needs all four public-access blocks."
  }

  assert {
    condition = alltrue([for k, b in aws_s3_bucket.this : contains(keys(aws_s3_bucket_server_side_encryption_configuration.this), k)]) && alltrue([
      for k in ["scratch", "database"] : one(one(aws_s3_bucket_server_side_encryption_configuration.this[k].rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms"
    ])
    error_message = "Every bucket is encrypted; data buckets with SSE-KMS."
  }

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this["scratch"].rule).apply_server_side_encryption_by_default).kms_master_key_id == aws_kms_key.this.arn
    error_message = "Data buckets use the stack KMS key."
  }

  assert {
    condition = alltrue([for k, p in aws_s3_bucket_policy.this : anytrue([
      for s in jsondecode(p.policy).Statement : s.Effect == "Deny" && try(s.Condition.Bool["aws:SecureTransport"], "") == "false"
    ])]) && length(aws_s3_bucket_policy.this) == 3
    error_message = "Every bucket policy denies non-TLS access."
  }

  assert {
    condition     = aws_kms_key.this.enable_key_rotation
    error_message = "KMS key rotation must be on."
  }
}

run "lifecycle_and_versioning" {
  command = plan

  assert {
    condition = alltrue([for k, l in aws_s3_bucket_lifecycle_configuration.this : anytrue([
      for r in l.rule : length(r.abort_incomplete_multipart_upload) == 1
    ])]) && length(aws_s3_bucket_lifecycle_configuration.this) == 3
    error_message = "Every bucket aborts incomplete multipart uploads."
  }

  assert {
    condition = anytrue([for r in aws_s3_bucket_lifecycle_configuration.this["scratch"].rule :
    r.id == "expire-scratch" && try(one(r.expiration).days, 0) == 14])
    error_message = "Scratch expires."
  }

  assert {
    condition     = keys(aws_s3_bucket_versioning.this) == ["database"]
    error_message = "The database bucket (DBs, weights, MSA cache) is versioned."
  }
}

run "allowed_prefixes" {
  command = plan

  assert {
    condition = output.allowed_input_prefixes == [
      "s3://example-datalake-dev/structures/", "s3://example-datalake-dev/sequences/",
      "s3://foldstack-dev-scratch-111111111111-eu-west-1/uploads/",
    ]
    error_message = "Inputs may come from readable locations and the upload prefix."
  }

  assert {
    condition     = output.allowed_output_prefixes == ["s3://example-datalake-dev/structures/"]
    error_message = "Outputs may go only to writable locations."
  }
}
