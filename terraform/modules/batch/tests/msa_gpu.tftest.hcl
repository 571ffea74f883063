mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

variables {
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
}

# The GPU MMseqs2 class of jobs.yaml (msa_gpu): a job definition of its own with one GPU, on
# the GPU queue jobs.yaml names, with the MSA image and role; the CPU msa job keeps no GPU.
run "msa_gpu_is_a_gpu_job_definition_on_its_gpu_queue" {
  command = plan

  assert {
    condition = contains([
      for r in jsondecode(aws_batch_job_definition.this["fold/msa_gpu"].container_properties).resourceRequirements : "${r.type}=${r.value}"
      ], "GPU=${yamldecode(file(var.job_spec_files.fold)).jobs.msa_gpu.resources.gpus}") && !contains([
      for r in jsondecode(aws_batch_job_definition.this["fold/msa"].container_properties).resourceRequirements : r.type
    ], "GPU")
    error_message = "msa_gpu asks Batch for the GPUs jobs.yaml gives it; the CPU msa job for none."
  }

  assert {
    condition     = jsondecode(aws_batch_job_definition.this["fold/msa_gpu"].container_properties).image == jsondecode(aws_batch_job_definition.this["fold/msa"].container_properties).image && jsondecode(aws_batch_job_definition.this["fold/msa_gpu"].container_properties).jobRoleArn == var.job_role_arns.msa_gpu
    error_message = "msa_gpu runs the MSA image (it carries the CUDA MMseqs2) under its own job role."
  }

  assert {
    condition     = contains(keys(aws_batch_job_queue.this), yamldecode(file(var.job_spec_files.fold)).jobs.msa_gpu.queue) && yamldecode(file(var.job_spec_files.fold)).queues[yamldecode(file(var.job_spec_files.fold)).jobs.msa_gpu.queue].tier == "gpu" && one(one(aws_batch_compute_environment.this[yamldecode(file(var.job_spec_files.fold)).jobs.msa_gpu.queue].compute_resources).ec2_configuration).image_type == "ECS_AL2023_NVIDIA"
    error_message = "msa_gpu's queue is a GPU queue whose compute runs the NVIDIA image."
  }

  assert {
    condition     = jsondecode(aws_batch_job_definition.this["fold/msa_gpu"].container_properties).command == yamldecode(file(var.job_spec_files.fold)).jobs.msa_gpu.command
    error_message = "msa_gpu runs the chain search phase (foldstack step msa-chains) as jobs.yaml says."
  }
}
