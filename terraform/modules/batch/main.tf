data "aws_region" "current" {}

locals {
  region = data.aws_region.current.name
  # The image each job definition runs, by ECR repository: the same URI goes into the job's
  # FOLDSTACK_IMAGE, so the manifest records which image made each result.
  image_refs = { for name, url in var.repository_urls : name => "${url}:${var.image_tag}" }
  specs      = { for wf, path in var.job_spec_files : wf => yamldecode(file(path)) }

  # Each workflow's reading of the queues it declares.
  queue_views = { for wf, s in local.specs : wf => {
    for q, spec in s.queues : q => {
      tier       = spec.tier
      purchase   = spec.purchase
      size_class = try(spec.size_class, null)
      # GPU instance types come from the size class of the job(s) using that queue.
      gpu_instance_types = distinct(flatten([
        for job, j in s.jobs : [
          for cls, r in try(j.size_classes, {}) : try(r.instance_types, []) if try(spec.size_class, null) == cls
        ]
      ]))
    }
  } }

  # Queues: the union of every workflow's `queues`. Workflows may share a queue (fold and
  # cryoem both run on cpu-spot / cpu-ondemand), but merge() keeps one reading of it: every
  # workflow must declare it alike, or plan fails (aws_batch_job_queue precondition).
  queues = merge(values(local.queue_views)...)
  queue_declarations = { for q in keys(local.queues) : q => {
    for wf, view in local.queue_views : wf => jsonencode(view[q]) if contains(keys(view), q)
  } }

  # One job definition per job, or per size class of a job that has size_classes.
  job_definitions = merge([for wf, s in local.specs : merge([
    for job, j in s.jobs : {
      for cls, r in(
        can(j.size_classes)
        ? { for c, sc in j.size_classes : c => { vcpu = sc.vcpu, memory_mib = sc.memory_mib, gpus = try(sc.gpus, 0) } }
        : { "" = { vcpu = j.resources.vcpu, memory_mib = j.resources.memory_mib, gpus = try(j.resources.gpus, 0) } }
        ) : "${wf}/${cls == "" ? job : "${job}_${cls}"}" => {
        workflow   = wf
        key        = cls == "" ? job : "${job}_${cls}"
        job        = job
        size_class = cls
        image      = j.image
        queue      = cls == "" ? j.queue : j.queue_by_size_class[cls]
        command    = j.command
        parameters = { for k, v in try(j.parameters, {}) : k => tostring(v) }
        timeout    = j.timeout_seconds
        attempts   = j.retry.attempts
        evaluate_on_exit = [for rule in j.retry.evaluate_on_exit : {
          action           = rule.action
          on_status_reason = try(rule.on_status_reason, null)
          on_reason        = try(rule.on_reason, null)
          on_exit_code     = try(tostring(rule.on_exit_code), null)
        }]
        resources = concat(
          [{ type = "VCPU", value = tostring(r.vcpu) }, { type = "MEMORY", value = tostring(r.memory_mib) }],
          r.gpus > 0 ? [{ type = "GPU", value = tostring(r.gpus) }] : [],
        )
      }
    }
  ]...)]...)

  compute_environments = {
    for q, spec in local.queues : q => {
      tier      = spec.tier
      spot      = spec.purchase == "spot"
      max_vcpus = try(var.compute_environments[q].max_vcpus, var.default_max_vcpus[spec.tier])
      min_vcpus = try(var.compute_environments[q].min_vcpus, 0)
      instance_types = coalesce(
        try(var.compute_environments[q].instance_types, null),
        spec.tier == "gpu" ? spec.gpu_instance_types : var.cpu_instance_types,
      )
    }
  }

  tiers = toset([for q in values(local.queues) : q.tier])
}

# ------------------------------------------------------------- launch templates

resource "aws_launch_template" "this" {
  for_each = local.tiers

  name_prefix            = "${var.name_prefix}-${each.key}-"
  update_default_version = true
  ebs_optimized          = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = var.root_volume_size_gib[each.key]
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.kms_key_arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  # Batch merges its own part into MIME multipart user data.
  user_data = base64encode(join("\n", [
    "MIME-Version: 1.0",
    "Content-Type: multipart/mixed; boundary=\"==FOLDSTACK==\"",
    "",
    "--==FOLDSTACK==",
    "Content-Type: text/x-shellscript; charset=\"us-ascii\"",
    "",
    templatefile("${path.module}/templates/user_data.sh.tftpl", {
      file_systems  = var.file_systems
      db_mount      = var.db_mount
      scratch_mount = var.scratch_mount
    }),
    "--==FOLDSTACK==--",
    "",
  ]))

  lifecycle {
    create_before_destroy = true
  }
}

# --------------------------------------------------------- compute environments

resource "aws_batch_compute_environment" "this" {
  for_each = local.compute_environments

  compute_environment_name_prefix = "${var.name_prefix}-${each.key}-"
  type                            = "MANAGED"
  state                           = "ENABLED"
  service_role                    = var.service_role_arn

  compute_resources {
    type                = each.value.spot ? "SPOT" : "EC2"
    allocation_strategy = each.value.spot ? "SPOT_PRICE_CAPACITY_OPTIMIZED" : "BEST_FIT_PROGRESSIVE"
    instance_type       = each.value.instance_types
    max_vcpus           = each.value.max_vcpus
    min_vcpus           = each.value.min_vcpus
    instance_role       = var.instance_profile_arn
    # A queue in queue_network (only the refresh queue, with refresh_egress on) adds its
    # security groups and may run in its own subnets; every other queue: compute SG only.
    security_group_ids = concat(var.security_group_ids, try(var.queue_network[each.key].security_group_ids, []))
    subnets = coalescelist(try(var.queue_network[each.key].subnet_ids, []),
    [for az in sort(keys(var.subnets)) : var.subnets[az].subnet_id])

    launch_template {
      launch_template_id = aws_launch_template.this[each.value.tier].id
      # Pinned version: a template change rolls the CE deliberately, never silently.
      version = tostring(aws_launch_template.this[each.value.tier].latest_version)
    }

    ec2_configuration {
      image_type = each.value.tier == "gpu" ? "ECS_AL2023_NVIDIA" : "ECS_AL2023"
    }
  }

  # Queues point at CEs: a replacement must exist before the old one goes.
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_batch_job_queue" "this" {
  for_each = local.queues

  name     = "${var.name_prefix}-${each.key}"
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.this[each.key].arn
  }

  lifecycle {
    precondition {
      condition     = length(distinct(values(local.queue_declarations[each.key]))) == 1
      error_message = "Queue ${each.key} is declared differently by the workflows sharing it (${join("; ", [for wf, d in local.queue_declarations[each.key] : "${wf}: ${d}"])}): a shared queue needs the same tier, purchase, size class and GPU instance types in every jobs.yaml."
    }
  }
}

# ------------------------------------------------------------------ job logs

resource "aws_cloudwatch_log_group" "jobs" {
  name              = "/aws/batch/${var.name_prefix}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

# ------------------------------------------------------------- job definitions

resource "aws_batch_job_definition" "this" {
  for_each = local.job_definitions

  name                  = "${var.name_prefix}-${each.value.workflow}-${replace(each.value.key, "_", "-")}"
  type                  = "container"
  platform_capabilities = ["EC2"]
  propagate_tags        = true
  parameters            = each.value.parameters

  timeout {
    attempt_duration_seconds = each.value.timeout
  }

  retry_strategy {
    attempts = each.value.attempts
    dynamic "evaluate_on_exit" {
      for_each = each.value.evaluate_on_exit
      content {
        action           = lower(evaluate_on_exit.value.action)
        on_status_reason = evaluate_on_exit.value.on_status_reason
        on_reason        = evaluate_on_exit.value.on_reason
        on_exit_code     = evaluate_on_exit.value.on_exit_code
      }
    }
  }

  container_properties = jsonencode({
    image                  = local.image_refs[each.value.image]
    command                = each.value.command
    jobRoleArn             = var.job_role_arns[each.value.job]
    user                   = var.container_user
    readonlyRootFilesystem = true
    privileged             = false
    resourceRequirements   = each.value.resources
    environment = concat([
      { name = "HOME", value = "/tmp" },
      # provenance: every step's done record names the image it ran (foldstack.core.provenance)
      { name = "FOLDSTACK_IMAGE", value = local.image_refs[each.value.image] },
      { name = "FOLDSTACK_SCRATCH_ROOT", value = var.scratch_mount },
      { name = "FOLDSTACK_DB_ROOT", value = var.db_mount },
    ], [for k in sort(keys(try(var.job_environment[each.value.job], {}))) : { name = k, value = var.job_environment[each.value.job][k] }])
    volumes = [
      { name = "scratch", host = { sourcePath = var.scratch_mount } },
      { name = "db", host = { sourcePath = var.db_mount } },
    ]
    mountPoints = [
      { sourceVolume = "scratch", containerPath = var.scratch_mount, readOnly = false },
      { sourceVolume = "db", containerPath = var.db_mount, readOnly = true },
    ]
    linuxParameters = {
      initProcessEnabled = true
      tmpfs              = [{ containerPath = "/tmp", size = var.tmpfs_mib, mountOptions = ["rw", "nosuid", "nodev"] }]
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.jobs.name
        "awslogs-region"        = local.region
        "awslogs-stream-prefix" = each.value.workflow
      }
    }
  })

  lifecycle {
    precondition {
      condition     = contains(keys(var.repository_urls), each.value.image)
      error_message = "Job ${each.key} uses image ${each.value.image}, which has no ECR repository."
    }
    precondition {
      condition     = contains(keys(var.job_role_arns), each.value.job)
      error_message = "Job ${each.value.job} has no job role."
    }
    precondition {
      condition     = contains(keys(local.queues), each.value.queue)
      error_message = "Job ${each.key} names queue ${each.value.queue}, which jobs.yaml does not define."
    }
    precondition {
      condition     = length(each.value.evaluate_on_exit) <= 5 && try(each.value.evaluate_on_exit[length(each.value.evaluate_on_exit) - 1].action, "") == "EXIT"
      error_message = "Job ${each.key}: evaluate_on_exit allows at most 5 rules and must end with EXIT (no match means retry)."
    }
  }
}
