locals {
  roles = {
    database = {
      bucket = var.database_bucket
      prefix = trimsuffix(var.database_prefix, "/")
      spec   = var.file_systems.database
    }
    scratch = {
      bucket = var.scratch_bucket
      prefix = ""
      spec   = var.file_systems.scratch
    }
  }

  # One database cache and one scratch file system per AZ: "<az>/<role>".
  file_systems = merge([
    for az, subnet in var.subnets : {
      for role, r in local.roles : "${az}/${role}" => merge(r, { az = az, role = role, subnet_id = subnet.subnet_id })
    }
  ]...)
}

resource "aws_fsx_lustre_file_system" "this" {
  for_each = local.file_systems

  deployment_type             = "PERSISTENT_2"
  storage_type                = "SSD"
  storage_capacity            = each.value.spec.storage_capacity
  per_unit_storage_throughput = each.value.spec.per_unit_storage_throughput
  subnet_ids                  = [each.value.subnet_id]
  security_group_ids          = [var.security_group_id]
  kms_key_id                  = var.kms_key_arn
  data_compression_type       = "LZ4"
  file_system_type_version    = "2.15"
  copy_tags_to_backups        = true

  automatic_backup_retention_days = each.value.role == "database" ? var.backup_retention_days : 0
  skip_final_backup               = each.value.role == "database" ? var.skip_final_backup : true

  dynamic "root_squash_configuration" {
    for_each = each.value.role == "database" ? [1] : []
    content {
      root_squash = var.squash_uid
    }
  }

  log_configuration {
    level = "WARN_ERROR"
  }

  tags = {
    Name = "${var.name_prefix}-${each.value.role}-${each.value.az}"
    Role = each.value.role
  }
}

# Database cache: import only. No auto_export_policy, so nothing on the file system is
# ever written back to (or deleted from) the database bucket.
resource "aws_fsx_data_repository_association" "database" {
  for_each = { for k, fs in local.file_systems : k => fs if fs.role == "database" }

  file_system_id                   = aws_fsx_lustre_file_system.this[each.key].id
  data_repository_path             = "s3://${each.value.bucket}/${each.value.prefix}/"
  file_system_path                 = "/"
  batch_import_meta_data_on_create = true
  delete_data_in_filesystem        = false

  s3 {
    auto_import_policy {
      events = ["NEW", "CHANGED", "DELETED"]
    }
  }
}

# Scratch: imports what Stage Inputs copies in, exports what jobs write. DELETED is
# deliberately not exported: cleaning scratch on the file system must never delete the
# S3 copy Collect Outputs reads (Cleanup deletes S3, which is imported as a delete).
resource "aws_fsx_data_repository_association" "scratch" {
  for_each = { for k, fs in local.file_systems : k => fs if fs.role == "scratch" }

  file_system_id                   = aws_fsx_lustre_file_system.this[each.key].id
  data_repository_path             = "s3://${each.value.bucket}/"
  file_system_path                 = "/"
  batch_import_meta_data_on_create = false
  delete_data_in_filesystem        = false

  s3 {
    auto_import_policy {
      events = ["NEW", "CHANGED", "DELETED"]
    }
    auto_export_policy {
      events = ["NEW", "CHANGED"]
    }
  }
}
