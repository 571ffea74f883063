# The batch module's test inputs, shared by every test file in this directory (terraform test
# loads .tfvars files from it); a file or run block sets only what differs.
name_prefix          = "foldstack-dev"
job_spec_files       = { fold = "../../../statemachines/fold/jobs.yaml" }
subnets              = { "eu-west-1a" = { subnet_id = "subnet-0aaaaaaaaaaaaaaa1" }, "eu-west-1b" = { subnet_id = "subnet-0bbbbbbbbbbbbbbb1" } }
security_group_ids   = ["sg-0c0c0c0c0c0c0c0c0"]
service_role_arn     = "arn:aws:iam::111111111111:role/foldstack-dev-batch-service"
instance_profile_arn = "arn:aws:iam::111111111111:instance-profile/foldstack-dev-batch-instance"
job_role_arns = {
  msa     = "arn:aws:iam::111111111111:role/foldstack-dev-job-msa"
  msa_gpu = "arn:aws:iam::111111111111:role/foldstack-dev-job-msa-gpu"
  predict = "arn:aws:iam::111111111111:role/foldstack-dev-job-predict"
}
repository_urls = {
  msa     = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/foldstack-dev/msa"
  predict = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/foldstack-dev/predict"
}
image_tag   = "0123456789abcdef0123456789abcdef01234567"
kms_key_arn = "arn:aws:kms:eu-west-1:111111111111:key/0b6f7c8e-1111-4d2b-9a44-123456789abc"
file_systems = {
  "eu-west-1a" = {
    database = { dns_name = "fs-0aaa.fsx.eu-west-1.amazonaws.com", mount_name = "dbaaaaaa" }
    scratch  = { dns_name = "fs-0bbb.fsx.eu-west-1.amazonaws.com", mount_name = "scaaaaaa" }
  }
  "eu-west-1b" = {
    database = { dns_name = "fs-0ccc.fsx.eu-west-1.amazonaws.com", mount_name = "dbbbbbbb" }
    scratch  = { dns_name = "fs-0ddd.fsx.eu-west-1.amazonaws.com", mount_name = "scbbbbbb" }
  }
}
