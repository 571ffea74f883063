output "kms_key_arn" {
  description = "ARN of the stack's KMS key."
  value       = aws_kms_key.this.arn
}

output "buckets" {
  description = "The stack's buckets by role (scratch, database, logs): id and ARN."
  value       = { for k, b in aws_s3_bucket.this : k => { id = b.bucket, arn = b.arn } }
}

output "scratch_bucket" {
  description = "Name of the scratch bucket (run working sets, uploads; linked to the scratch FSx)."
  value       = aws_s3_bucket.this["scratch"].bucket
}

output "scratch_bucket_arn" {
  description = "ARN of the scratch bucket."
  value       = aws_s3_bucket.this["scratch"].arn
}

output "database_bucket" {
  description = "Name of the database bucket (sequence DBs, weights, MSA cache)."
  value       = aws_s3_bucket.this["database"].bucket
}

output "database_bucket_arn" {
  description = "ARN of the database bucket."
  value       = aws_s3_bucket.this["database"].arn
}

output "database_prefix" {
  description = "Key prefix of the sequence databases and weights in the database bucket (imported into the DB FSx)."
  value       = local.database_prefix
}

output "cache_prefix" {
  description = "Key prefix of the MSA cache in the database bucket."
  value       = local.cache_prefix
}

output "upload_prefix" {
  description = "Key prefix in the scratch bucket where clients upload local input files."
  value       = local.upload_prefix
}

output "cache_root_uri" {
  description = "s3:// URI of the MSA cache root."
  value       = "s3://${aws_s3_bucket.this["database"].bucket}/${trimsuffix(local.cache_prefix, "/")}"
}

output "scratch_root_uri" {
  description = "s3:// URI of the scratch root."
  value       = "s3://${aws_s3_bucket.this["scratch"].bucket}"
}

output "upload_uri" {
  description = "s3:// URI clients upload local files to."
  value       = "s3://${aws_s3_bucket.this["scratch"].bucket}/${local.upload_prefix}"
}

output "data_lake_locations" {
  description = "Normalised data-lake locations: bucket, bucket_arn, prefix (no trailing slash), uri, access, kms_key_arn."
  value       = local.data_lake
}

output "allowed_input_prefixes" {
  description = "s3:// prefixes the workflow may read inputs from: readable data-lake locations plus the upload prefix."
  value = concat(
    [for k in sort(keys(local.data_lake)) : local.data_lake[k].uri if local.data_lake[k].access != "write"],
    ["s3://${aws_s3_bucket.this["scratch"].bucket}/${local.upload_prefix}"],
  )
}

output "allowed_output_prefixes" {
  description = "s3:// prefixes the workflow may write results to."
  value       = [for k in sort(keys(local.data_lake)) : local.data_lake[k].uri if local.data_lake[k].access != "read"]
}
