# prod: larger fleets, longer retention, deletion protection where it exists.
environment = "prod"
region      = "eu-west-1"
# Placeholder account id: replace with your prod account. Terraform refuses any other.
allowed_account_ids = ["222222222222"]

# Existing network (placeholder ids).
vpc_id = "vpc-0fedcba9876543210"
subnets = {
  "eu-west-1a" = { subnet_id = "subnet-0ccccccccccccccc1", route_table_id = "rtb-0ccccccccccccccc1" }
  "eu-west-1b" = { subnet_id = "subnet-0ddddddddddddddd1", route_table_id = "rtb-0ddddddddddddddd1" }
  "eu-west-1c" = { subnet_id = "subnet-0eeeeeeeeeeeeeee1", route_table_id = "rtb-0eeeeeeeeeeeeeee1" }
}

data_lake_locations = {
  sequences = { bucket = "example-datalake-prod", prefix = "sequences", access = "read" }
  results   = { bucket = "example-datalake-prod", prefix = "structures", access = "read_write" }
}
default_output_location = "results"

# Overridden by CI with the commit SHA (TF_VAR_image_tag).
image_tag = "bootstrap"

compute_environments = {
  "cpu-spot"     = { max_vcpus = 1024 }
  "cpu-ondemand" = { max_vcpus = 256 }
  "gpu-small"    = { max_vcpus = 256 }
  "gpu-medium"   = { max_vcpus = 256 }
  "gpu-large"    = { max_vcpus = 384 }
}

lambda_settings = {
  stage_inputs    = { reserved_concurrency = 50 }
  collect_outputs = { reserved_concurrency = 50 }
}

storage = {
  scratch_expiration_days = 30
  force_destroy           = false
  kms_deletion_window     = 30
}

# Never: a destroy must not take the images prod runs with it.
ecr_force_delete = false

fsx = {
  database_storage_capacity = 4800
  scratch_storage_capacity  = 4800
  backup_retention_days     = 7
  skip_final_backup         = false
}

log_retention_days = 365

alarm_emails = ["platform-oncall@example.com"]
