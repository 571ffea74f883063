mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
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
