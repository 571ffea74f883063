# The cryoem workflow's Batch side, with fold deployed beside it (they share the CPU queues).
# Every expectation is derived from statemachines/cryoem/jobs.yaml (yamldecode below), never
# restated: a change there is a change here.
mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

# fold and cryoem deployed together (the other inputs: terraform.tfvars here).
variables {
  job_spec_files = {
    fold   = "../../../statemachines/fold/jobs.yaml"
    cryoem = "../../../statemachines/cryoem/jobs.yaml"
  }
  job_role_arns = {
    msa                = "arn:aws:iam::111111111111:role/foldstack-dev-job-msa"
    msa_gpu            = "arn:aws:iam::111111111111:role/foldstack-dev-job-msa-gpu"
    predict            = "arn:aws:iam::111111111111:role/foldstack-dev-job-predict"
    cryoem_preprocess  = "arn:aws:iam::111111111111:role/foldstack-dev-job-cryoem-preprocess"
    cryoem_curate      = "arn:aws:iam::111111111111:role/foldstack-dev-job-cryoem-curate"
    cryoem_gpu         = "arn:aws:iam::111111111111:role/foldstack-dev-job-cryoem-gpu"
    cryoem_postprocess = "arn:aws:iam::111111111111:role/foldstack-dev-job-cryoem-postprocess"
  }
  repository_urls = {
    msa          = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/foldstack-dev/msa"
    predict      = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/foldstack-dev/predict"
    "cryoem-cpu" = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/foldstack-dev/cryoem-cpu"
    "cryoem-gpu" = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/foldstack-dev/cryoem-gpu"
  }
}

run "one_job_definition_per_cryoem_job_and_size_class" {
  command = plan

  assert {
    condition = toset(keys(output.job_definition_names.cryoem)) == toset(flatten([
      for job, j in yamldecode(file(var.job_spec_files.cryoem)).jobs :
      can(j.size_classes) ? [for c in keys(j.size_classes) : "${job}_${c}"] : [job]
    ])) && alltrue([for k, name in output.job_definition_names.cryoem : name == "foldstack-dev-cryoem-${replace(k, "_", "-")}"])
    error_message = "Every cryoem job gets one job definition, or one per size class (cryoem_gpu_small/medium/large), named foldstack-dev-cryoem-<key>."
  }

  assert {
    condition = alltrue(flatten([
      for job, j in yamldecode(file(var.job_spec_files.cryoem)).jobs : [
        for cls, r in(can(j.size_classes) ? j.size_classes : { "" = j.resources }) : (
          [for x in jsondecode(aws_batch_job_definition.this["cryoem/${cls == "" ? job : "${job}_${cls}"}"].container_properties).resourceRequirements : "${x.type}=${x.value}"]
          == concat(["VCPU=${r.vcpu}", "MEMORY=${r.memory_mib}"], try(r.gpus, 0) > 0 ? ["GPU=${r.gpus}"] : [])
        )
      ]
    ]))
    error_message = "vCPUs, memory and GPU count of every cryoem job definition are jobs.yaml's (per size class for cryoem_gpu)."
  }

  assert {
    condition = length([
      for k, d in aws_batch_job_definition.this : k
      if startswith(k, "cryoem/") && anytrue([for x in jsondecode(d.container_properties).resourceRequirements : x.type == "GPU"])
      ]) == length(flatten([
        for job, j in yamldecode(file(var.job_spec_files.cryoem)).jobs : [for c, r in try(j.size_classes, {}) : c if try(r.gpus, 0) > 0]
    ]))
    error_message = "Only the GPU size classes ask for a GPU; the CPU steps (preprocess, curate, postprocess) ask for none."
  }

  assert {
    condition = alltrue(flatten([
      for job, j in yamldecode(file(var.job_spec_files.cryoem)).jobs : [
        for k, d in aws_batch_job_definition.this : [
          one(d.timeout).attempt_duration_seconds == j.timeout_seconds,
          one(d.retry_strategy).attempts == j.retry.attempts,
          length(one(d.retry_strategy).evaluate_on_exit) == length(j.retry.evaluate_on_exit),
          alltrue([for i, rule in j.retry.evaluate_on_exit :
            lower(one(d.retry_strategy).evaluate_on_exit[i].action) == lower(rule.action)
            && one(d.retry_strategy).evaluate_on_exit[i].on_reason == try(rule.on_reason, null)
            && one(d.retry_strategy).evaluate_on_exit[i].on_status_reason == try(rule.on_status_reason, null)
            && one(d.retry_strategy).evaluate_on_exit[i].on_exit_code == try(tostring(rule.on_exit_code), null)
          ]),
          d.parameters == tomap({ for p, v in j.parameters : p => tostring(v) }),
          jsondecode(d.container_properties).command == j.command,
          jsondecode(d.container_properties).image == "${var.repository_urls[j.image]}:${var.image_tag}",
          jsondecode(d.container_properties).jobRoleArn == var.job_role_arns[job],
        ] if k == "cryoem/${job}" || startswith(k, "cryoem/${job}_")
      ]
    ]))
    error_message = "Timeouts, retry rules (in order), parameters, commands, images and job roles of the cryoem job definitions come from jobs.yaml."
  }
}

run "cryoem_gpu_queues_get_their_classes_instance_types" {
  command = plan

  assert {
    condition = alltrue([
      for q, spec in yamldecode(file(var.job_spec_files.cryoem)).queues : (
        aws_batch_job_queue.this[q].name == "foldstack-dev-${q}"
        && one(aws_batch_job_queue.this[q].compute_environment_order).compute_environment == aws_batch_compute_environment.this[q].arn
        && one(aws_batch_compute_environment.this[q].compute_resources).type == (spec.purchase == "spot" ? "SPOT" : "EC2")
        && one(one(aws_batch_compute_environment.this[q].compute_resources).ec2_configuration).image_type == (spec.tier == "gpu" ? "ECS_AL2023_NVIDIA" : "ECS_AL2023")
      )
    ])
    error_message = "Every cryoem queue has its own compute environment, of its jobs.yaml tier and purchase option."
  }

  assert {
    condition = alltrue([
      for q, spec in yamldecode(file(var.job_spec_files.cryoem)).queues :
      one(aws_batch_compute_environment.this[q].compute_resources).instance_type == toset(flatten([
        for job, j in yamldecode(file(var.job_spec_files.cryoem)).jobs : [
          for cls, r in try(j.size_classes, {}) : r.instance_types if cls == spec.size_class
        ]
      ])) if spec.tier == "gpu"
    ])
    error_message = "A cryoem GPU queue's compute environment runs the instance types of the size class it serves (jobs.yaml cryoem_gpu size_classes)."
  }

  assert {
    condition = alltrue([
      for job, j in yamldecode(file(var.job_spec_files.cryoem)).jobs : alltrue([
        for cls, q in try(j.queue_by_size_class, {}) :
        contains(keys(yamldecode(file(var.job_spec_files.cryoem)).queues), q)
        && yamldecode(file(var.job_spec_files.cryoem)).queues[q].size_class == cls
        && yamldecode(file(var.job_spec_files.cryoem)).queues[q].tier == "gpu"
      ])
    ]) && length(aws_batch_compute_environment.this) >= 6
    error_message = "Each cryoem GPU size class routes to a GPU queue serving that class."
  }

  assert {
    condition = toset(keys(aws_batch_job_queue.this)) == toset(flatten([
      for wf, path in var.job_spec_files : keys(yamldecode(file(path)).queues)
    ]))
    error_message = "The queues are the union of fold's and cryoem's: the shared CPU queues once, each GPU queue once."
  }

  assert {
    condition = alltrue([for q in ["cpu-spot", "cpu-ondemand"] :
      toset(one(aws_batch_compute_environment.this[q].compute_resources).instance_type) == toset(var.cpu_instance_types)
    ]) && one(aws_batch_compute_environment.this["gpu-small"].compute_resources).instance_type == toset(yamldecode(file(var.job_spec_files.fold)).jobs.predict.size_classes.small.instance_types)
    error_message = "Sharing the CPU queues with cryoem changes neither them nor fold's GPU queues."
  }
}

run "a_queue_two_workflows_declare_differently_fails_plan" {
  command = plan

  variables {
    job_spec_files = {
      fold        = "../../../statemachines/fold/jobs.yaml"
      conflicting = "tests/fixtures/cpu_spot_on_demand.jobs.yaml"
    }
    job_role_arns = {
      msa               = "arn:aws:iam::111111111111:role/foldstack-dev-job-msa"
      msa_gpu           = "arn:aws:iam::111111111111:role/foldstack-dev-job-msa-gpu"
      predict           = "arn:aws:iam::111111111111:role/foldstack-dev-job-predict"
      conflicting_probe = "arn:aws:iam::111111111111:role/foldstack-dev-job-conflicting-probe"
    }
  }

  expect_failures = [aws_batch_job_queue.this]
}

run "a_gpu_queue_two_workflows_size_differently_fails_plan" {
  command = plan

  variables {
    job_spec_files = {
      fold        = "../../../statemachines/fold/jobs.yaml"
      conflicting = "tests/fixtures/gpu_small_other_instances.jobs.yaml"
    }
    job_role_arns = {
      msa               = "arn:aws:iam::111111111111:role/foldstack-dev-job-msa"
      msa_gpu           = "arn:aws:iam::111111111111:role/foldstack-dev-job-msa-gpu"
      predict           = "arn:aws:iam::111111111111:role/foldstack-dev-job-predict"
      conflicting_probe = "arn:aws:iam::111111111111:role/foldstack-dev-job-conflicting-probe"
    }
  }

  expect_failures = [aws_batch_job_queue.this]
}
