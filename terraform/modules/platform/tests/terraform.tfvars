# The platform module's test inputs, shared by every test file in this directory (terraform test
# loads .tfvars files from it); a file or run block sets only what differs.
environment = "dev"
vpc_id      = "vpc-0123456789abcdef0"
subnets = {
  "eu-west-1a" = { subnet_id = "subnet-0aaaaaaaaaaaaaaa1", route_table_id = "rtb-0aaaaaaaaaaaaaaa1" }
  "eu-west-1b" = { subnet_id = "subnet-0bbbbbbbbbbbbbbb1", route_table_id = "rtb-0bbbbbbbbbbbbbbb1" }
}
# As terraform/envs/_shared builds it from statemachines/workloads.yaml.
workflows = {
  fold = {
    definition_file = "../../../statemachines/rendered/fold.asl.json"
    job_spec_file   = "../../../statemachines/fold/jobs.yaml"
    submitted_by    = "client"
  }
  refresh_databases = {
    definition_file = "../../../statemachines/rendered/refresh_databases.asl.json"
    job_spec_file   = "../../../statemachines/refresh_databases/jobs.yaml"
    submitted_by    = "operator"
  }
  cryoem = {
    definition_file = "../../../statemachines/rendered/cryoem.asl.json"
    job_spec_file   = "../../../statemachines/cryoem/jobs.yaml"
    submitted_by    = "client"
  }
}
data_lake_locations = {
  sequences = { bucket = "example-datalake-dev", prefix = "sequences", access = "read" }
  results   = { bucket = "example-datalake-dev", prefix = "structures", access = "read_write" }
}
default_output_location = "results"
lambda_package_dir      = "../../../build/lambdas"
image_tag               = "0123456789abcdef0123456789abcdef01234567"
