mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}


run "a_job_definition_for_every_jobs_yaml_entry" {
  command = plan

  assert {
    condition = toset([for d in aws_batch_job_definition.this : d.name]) == toset(flatten([
      for wf, path in var.job_spec_files : [
        for job, j in yamldecode(file(path)).jobs :
        can(j.size_classes) ? [for c in keys(j.size_classes) : "foldstack-dev-${wf}-${replace(job, "_", "-")}-${c}"] : ["foldstack-dev-${wf}-${replace(job, "_", "-")}"]
      ]
    ]))
    error_message = "Every job (per size class) of every jobs.yaml needs a job definition."
  }

  assert {
    condition = alltrue(flatten([
      for wf, path in var.job_spec_files : [
        for job, j in yamldecode(file(path)).jobs : [
          for k, d in aws_batch_job_definition.this : [
            one(d.timeout).attempt_duration_seconds == j.timeout_seconds,
            one(d.retry_strategy).attempts == j.retry.attempts,
            d.parameters == tomap({ for p, v in j.parameters : p => tostring(v) }),
            jsondecode(d.container_properties).command == j.command,
          ] if k == "${wf}/${job}" || contains([for c in keys(try(j.size_classes, {})) : "${wf}/${job}_${c}"], k) # exact: msa is not msa_gpu
        ]
      ]
    ]))
    error_message = "Timeouts, retry attempts, parameters and commands come from jobs.yaml."
  }

  assert {
    condition = [for r in jsondecode(aws_batch_job_definition.this["fold/predict_medium"].container_properties).resourceRequirements : "${r.type}=${r.value}"] == [
    "VCPU=8", "MEMORY=60000", "GPU=1"]
    error_message = "Size-class resources come from jobs.yaml."
  }

  assert {
    condition = alltrue([for k, d in aws_batch_job_definition.this :
      one([for e in jsondecode(d.container_properties).environment : e.value if e.name == "FOLDSTACK_IMAGE"]) == jsondecode(d.container_properties).image
    ])
    error_message = "Every job definition tells its job which image it runs (FOLDSTACK_IMAGE, recorded in the manifest's provenance)."
  }

  assert {
    condition     = jsondecode(aws_batch_job_definition.this["fold/predict_medium"].container_properties).image == "111111111111.dkr.ecr.eu-west-1.amazonaws.com/foldstack-dev/predict:0123456789abcdef0123456789abcdef01234567"
    error_message = "The image is the repository URL at the image tag."
  }
}

run "evaluate_on_exit_retries_only_host_loss" {
  command = plan

  assert {
    condition = alltrue([for d in aws_batch_job_definition.this :
      length(one(d.retry_strategy).evaluate_on_exit) <= 5 &&
      anytrue([for r in one(d.retry_strategy).evaluate_on_exit :
      r.on_status_reason == "Host EC2*" && lower(r.action) == "retry"]) &&
      alltrue([for i, r in one(d.retry_strategy).evaluate_on_exit :
      r.on_reason != "OutOfMemoryError*" || (i == 0 && lower(r.action) == "exit")]) &&
      lower(one(d.retry_strategy).evaluate_on_exit[length(one(d.retry_strategy).evaluate_on_exit) - 1].action) == "exit" &&
      one(d.retry_strategy).evaluate_on_exit[length(one(d.retry_strategy).evaluate_on_exit) - 1].on_exit_code == "*"
    ])
    error_message = "Every job definition retries Spot/host loss, exits first on a memory kill (the workflow escalates) and exits on everything else (last rule EXIT on *)."
  }

  assert {
    condition = alltrue([for d in aws_batch_job_definition.this : alltrue([
      for r in one(d.retry_strategy).evaluate_on_exit : lower(r.action) == "exit" || r.on_exit_code == null || r.on_exit_code == "75"
    ])])
    error_message = "The only exit code a rule may retry is 75 (inputs not yet visible); bad input (2) and OOM (3) must not be retried."
  }
}

run "containers_are_locked_down" {
  command = plan

  assert {
    condition = alltrue([for d in aws_batch_job_definition.this :
      jsondecode(d.container_properties).readonlyRootFilesystem &&
      !startswith(jsondecode(d.container_properties).user, "0") &&
      !jsondecode(d.container_properties).privileged &&
      jsondecode(d.container_properties).logConfiguration.logDriver == "awslogs" &&
      contains(values(var.job_role_arns), jsondecode(d.container_properties).jobRoleArn) &&
      jsondecode(d.container_properties).jobRoleArn != var.instance_profile_arn
    ])
    error_message = "Non-root, read-only root FS, awslogs, a job role of its own."
  }

  assert {
    condition = alltrue([for d in aws_batch_job_definition.this :
    anytrue([for m in jsondecode(d.container_properties).mountPoints : m.containerPath == "/fsx/db" && m.readOnly])])
    error_message = "The database cache is mounted read-only in every job."
  }

  assert {
    condition     = endswith(jsondecode(aws_batch_job_definition.this["fold/msa"].container_properties).image, "/foldstack-dev/msa:${var.image_tag}")
    error_message = "Images come from our ECR with the given tag."
  }
}

run "launch_templates_and_compute_environments" {
  command = plan

  assert {
    condition = alltrue([for lt in aws_launch_template.this :
      one(lt.metadata_options).http_tokens == "required" && one(lt.metadata_options).http_put_response_hop_limit == 1 &&
    one(one(lt.block_device_mappings).ebs).encrypted == "true"]) && length(aws_launch_template.this) == 2
    error_message = "Launch templates require IMDSv2 with hop limit 1 and encrypt the root volume."
  }

  assert {
    condition = alltrue([for ce in aws_batch_compute_environment.this :
    can(tonumber(one(one(ce.compute_resources).launch_template).version))])
    error_message = "Compute environments pin a numeric launch-template version (never $Latest/$Default)."
  }

  assert {
    condition = alltrue([for k, ce in aws_batch_compute_environment.this :
    startswith(ce.compute_environment_name_prefix, "foldstack-dev-${k}-")])
    error_message = "CEs use name_prefix so they can be replaced (create_before_destroy) without breaking queues."
  }

  assert {
    condition = one(aws_batch_compute_environment.this["cpu-spot"].compute_resources).allocation_strategy == "SPOT_PRICE_CAPACITY_OPTIMIZED" && one(aws_batch_compute_environment.this["cpu-spot"].compute_resources).type == "SPOT" && length(
    one(aws_batch_compute_environment.this["cpu-spot"].compute_resources).instance_type) >= 3
    error_message = "The CPU Spot CE uses SPOT_PRICE_CAPACITY_OPTIMIZED over several families."
  }

  assert {
    condition = alltrue([for k in ["gpu-small", "gpu-medium", "gpu-large"] :
      one(aws_batch_compute_environment.this[k].compute_resources).allocation_strategy == "BEST_FIT_PROGRESSIVE" &&
    one(one(aws_batch_compute_environment.this[k].compute_resources).ec2_configuration).image_type == "ECS_AL2023_NVIDIA"])
    error_message = "GPU CEs: BEST_FIT_PROGRESSIVE on the NVIDIA AL2023 image."
  }

  assert {
    condition     = one(aws_batch_compute_environment.this["gpu-small"].compute_resources).instance_type == toset(["g5.xlarge", "g6.xlarge"])
    error_message = "GPU instance types come from the jobs.yaml size class."
  }

  assert {
    condition     = length(aws_batch_job_queue.this) == length(yamldecode(file(var.job_spec_files.fold)).queues)
    error_message = "One queue per jobs.yaml queue."
  }

  assert {
    condition = alltrue([for lt in aws_launch_template.this : strcontains(base64decode(lt.user_data), "fs-0ccc.fsx.eu-west-1.amazonaws.com@tcp:/dbbbbbbb") &&
    strcontains(base64decode(lt.user_data), "meta-data/placement/availability-zone")])
    error_message = "User data mounts the file systems of the instance's own AZ."
  }
}

run "refresh_egress_reaches_only_the_queue_it_names" {
  command = plan

  variables {
    job_spec_files = {
      fold              = "../../../statemachines/fold/jobs.yaml"
      refresh_databases = "../../../statemachines/refresh_databases/jobs.yaml"
    }
    job_role_arns = {
      msa                = "arn:aws:iam::111111111111:role/foldstack-dev-job-msa"
      msa_gpu            = "arn:aws:iam::111111111111:role/foldstack-dev-job-msa-gpu"
      predict            = "arn:aws:iam::111111111111:role/foldstack-dev-job-predict"
      refresh_db         = "arn:aws:iam::111111111111:role/foldstack-dev-job-refresh-db"
      refresh_db_cleanup = "arn:aws:iam::111111111111:role/foldstack-dev-job-refresh-db-cleanup"
    }
    queue_network   = { "cpu-refresh" = { security_group_ids = ["sg-0e0e0e0e0e0e0e0e0"], subnet_ids = ["subnet-0eeeeeeeeeeeeeee1"] } }
    job_environment = { refresh_db = { HTTPS_PROXY = "http://10.0.5.10:3128" } }
  }

  assert {
    condition = alltrue([for q, ce in aws_batch_compute_environment.this :
      q == "cpu-refresh"
      ? (toset(one(ce.compute_resources).security_group_ids) == toset(["sg-0c0c0c0c0c0c0c0c0", "sg-0e0e0e0e0e0e0e0e0"]) && toset(one(ce.compute_resources).subnets) == toset(["subnet-0eeeeeeeeeeeeeee1"]))
      : (toset(one(ce.compute_resources).security_group_ids) == toset(["sg-0c0c0c0c0c0c0c0c0"]) && toset(one(ce.compute_resources).subnets) == toset(["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb1"]))
    ])
    error_message = "Only the refresh queue's compute environment gets the egress group and subnets; fold compute keeps the compute group alone."
  }

  assert {
    condition     = contains([for e in jsondecode(aws_batch_job_definition.this["refresh_databases/refresh_db"].container_properties).environment : e.name], "HTTPS_PROXY") && !contains(flatten([for k, d in aws_batch_job_definition.this : [for e in jsondecode(d.container_properties).environment : e.name] if startswith(k, "fold/")]), "HTTPS_PROXY")
    error_message = "Only the refresh job gets the proxy setting."
  }
}
