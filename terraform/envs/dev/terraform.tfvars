# dev: small, cheap, disposable.
environment = "dev"
region      = "eu-west-1"
# Placeholder account id: replace with your dev account. Terraform refuses any other.
allowed_account_ids = ["111111111111"]

# Existing network (placeholder ids).
vpc_id = "vpc-0123456789abcdef0"
subnets = {
  "eu-west-1a" = { subnet_id = "subnet-0aaaaaaaaaaaaaaa1", route_table_id = "rtb-0aaaaaaaaaaaaaaa1" }
  "eu-west-1b" = { subnet_id = "subnet-0bbbbbbbbbbbbbbb1", route_table_id = "rtb-0bbbbbbbbbbbbbbb1" }
}

data_lake_locations = {
  sequences = { bucket = "example-datalake-dev", prefix = "sequences", access = "read" }
  results   = { bucket = "example-datalake-dev", prefix = "structures", access = "read_write" }
}
default_output_location = "results"

# Overridden by CI with the commit SHA (TF_VAR_image_tag).
image_tag = "bootstrap"

compute_environments = {
  "cpu-spot"     = { max_vcpus = 64 }
  "cpu-ondemand" = { max_vcpus = 16 }
  "gpu-small"    = { max_vcpus = 16 }
  "gpu-medium"   = { max_vcpus = 16 }
  "gpu-large"    = { max_vcpus = 96 }
}

storage = {
  scratch_expiration_days = 7
  force_destroy           = true
  kms_deletion_window     = 7
}

# Disposable: destroy also deletes pushed images (like force_destroy on the buckets).
ecr_force_delete = true

fsx = {
  backup_retention_days = 0
  skip_final_backup     = true
}

log_retention_days = 14
