mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

variables {
  name_prefix       = "foldstack-dev"
  security_group_id = "sg-0f0f0f0f0f0f0f0f0"
  kms_key_arn       = "arn:aws:kms:eu-west-1:111111111111:key/0b6f7c8e-1111-4d2b-9a44-123456789abc"
  database_bucket   = "foldstack-dev-database-111111111111-eu-west-1"
  scratch_bucket    = "foldstack-dev-scratch-111111111111-eu-west-1"
  subnets = {
    "eu-west-1a" = { subnet_id = "subnet-0aaaaaaaaaaaaaaa1" }
    "eu-west-1b" = { subnet_id = "subnet-0bbbbbbbbbbbbbbb1" }
    "eu-west-1c" = { subnet_id = "subnet-0ccccccccccccccc1" }
  }
}

run "one_database_cache_and_one_scratch_per_az" {
  command = plan

  assert {
    condition = alltrue([for az, s in var.subnets : length([
      for k, fs in aws_fsx_lustre_file_system.this : k if fs.tags.Role == "database" && one(fs.subnet_ids) == s.subnet_id
      ]) == 1 && length([
      for k, fs in aws_fsx_lustre_file_system.this : k if fs.tags.Role == "scratch" && one(fs.subnet_ids) == s.subnet_id
    ]) == 1]) && length(aws_fsx_lustre_file_system.this) == 6
    error_message = "Each AZ needs exactly one database cache and one scratch file system."
  }

  assert {
    condition     = alltrue([for fs in aws_fsx_lustre_file_system.this : fs.kms_key_id == var.kms_key_arn && fs.security_group_ids == toset([var.security_group_id])])
    error_message = "File systems are encrypted with the stack key and use the FSx SG."
  }

  assert {
    condition     = length(output.file_systems) == 3 && alltrue([for az, fss in output.file_systems : toset(keys(fss)) == toset(["database", "scratch"])])
    error_message = "Per-AZ outputs list the database and scratch file systems."
  }
}

run "database_is_import_only_and_scratch_never_exports_deletes" {
  command = plan

  assert {
    condition = alltrue([for d in aws_fsx_data_repository_association.database :
      length(one(d.s3).auto_export_policy) == 0 && !d.delete_data_in_filesystem &&
    d.data_repository_path == "s3://foldstack-dev-database-111111111111-eu-west-1/db/"]) && length(aws_fsx_data_repository_association.database) == 3
    error_message = "The database cache imports from db/ and never exports."
  }

  assert {
    condition = alltrue([for d in aws_fsx_data_repository_association.scratch :
    !contains(one(one(d.s3).auto_export_policy).events, "DELETED")]) && length(aws_fsx_data_repository_association.scratch) == 3
    error_message = "Scratch must never export DELETED (cleaning the FS would delete the S3 copy)."
  }

  assert {
    condition = alltrue([for k, fs in aws_fsx_lustre_file_system.this :
    fs.tags.Role == "database" ? one(fs.root_squash_configuration).root_squash == "65534:65534" : length(fs.root_squash_configuration) == 0])
    error_message = "Root is squashed on the database cache."
  }
}
