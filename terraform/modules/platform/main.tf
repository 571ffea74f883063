data "aws_region" "current" {}

locals {
  name_prefix = coalesce(var.name_prefix, "foldstack-${var.environment}")

  job_spec_files = { for wf, w in var.workflows : wf => w.job_spec_file }
  specs          = { for wf, path in local.job_spec_files : wf => yamldecode(file(path)) }
  images         = toset(flatten([for s in values(local.specs) : [for j in values(s.jobs) : j.image]]))
  job_names      = toset(flatten([for s in values(local.specs) : keys(s.jobs)]))

  # uid:gid of the step images' user (containers/*/Dockerfile): Batch runs jobs as it, and
  # Stage Inputs gives the run's scratch directories to it through FSx POSIX metadata.
  container_user = "1000:1000"
  scratch_mount  = "/fsx/scratch"
  db_mount       = "/fsx/db"
  weights_dir    = "/fsx/db/weights"
  # Where databases are published: the DB FSx file systems import this prefix and are
  # read-only to jobs, so the refresh_databases jobs write here (ASL ${db_uri}).
  db_uri                = "s3://${module.storage.database_bucket}/${trimsuffix(module.storage.database_prefix, "/")}"
  database_publish_jobs = toset(["refresh_db", "refresh_db_cleanup"])

  # What each handler needs; sizes are overridable per environment.
  lambda_defaults = {
    validate_input = { memory_size = 512, timeout = 60, reserved_concurrency = -1, access = { read_inputs = true, read_cache = true } }
    stage_inputs   = { memory_size = 1024, timeout = 300, reserved_concurrency = -1, access = { read_inputs = true, write_scratch = true } }
    # Collect Outputs: reads the per-batch summaries (and input/targets.json) from scratch and
    # writes the run-level files and manifest.json; it no longer reads any target's files.
    collect_outputs = { memory_size = 1024, timeout = 600, reserved_concurrency = -1, access = { read_scratch = true, write_outputs = true } }
    cleanup         = { memory_size = 512, timeout = 300, reserved_concurrency = -1, access = { read_scratch = true, delete_scratch = true } }
    # MSA cache lookup: reads <db>/<name>/CURRENT and the cache, copies a hit into scratch.
    msa_cache = { memory_size = 1024, timeout = 300, reserved_concurrency = -1, access = { read_cache = true, read_databases = true, write_scratch = true } }
    # Publish Batch: per batch, reads its targets' step outputs, publishes them and their
    # reports, writes the batch summary to scratch and fills the MSA cache with new MSAs;
    # asks Batch/ECS which instance type each job ran on (cost estimate).
    publish_batch = { memory_size = 1024, timeout = 600, reserved_concurrency = -1, access = { read_scratch = true, write_scratch = true, write_outputs = true, write_cache = true, describe_batch_instances = true } }
    # Plan Batches: packs targets into Predict jobs; writes the Distributed Map manifest.
    # Reads scratch input/targets.json when the run is too large to carry its targets in the state.
    plan_batches = { memory_size = 512, timeout = 60, reserved_concurrency = -1, access = { read_scratch = true, write_scratch = true } }
  }
  lambda_functions = {
    for k, d in local.lambda_defaults : k => {
      memory_size          = coalesce(try(var.lambda_settings[k].memory_size, null), d.memory_size)
      timeout              = coalesce(try(var.lambda_settings[k].timeout, null), d.timeout)
      reserved_concurrency = coalesce(try(var.lambda_settings[k].reserved_concurrency, null), d.reserved_concurrency)
      description          = "foldstack ${k} (${var.environment})"
    }
  }
}

module "storage" {
  source = "../storage"

  name_prefix              = local.name_prefix
  data_lake_locations      = var.data_lake_locations
  scratch_expiration_days  = var.storage.scratch_expiration_days
  force_destroy            = var.storage.force_destroy
  kms_deletion_window_days = var.storage.kms_deletion_window
}

module "network" {
  source = "../network"

  name_prefix                = local.name_prefix
  vpc_id                     = var.vpc_id
  subnets                    = var.subnets
  create_s3_gateway_endpoint = var.create_s3_gateway_endpoint
  refresh_egress             = { mode = var.refresh_egress.mode, proxy_cidr = var.refresh_egress.proxy_cidr, proxy_port = var.refresh_egress.proxy_port }
}

locals {
  # Opt-in egress reaches only the refresh_databases workflow's own queue and jobs.
  refresh_queue_network = var.refresh_egress.mode == "none" ? {} : {
    (var.refresh_egress.queue) = {
      security_group_ids = [module.network.refresh_egress_security_group_id]
      subnet_ids         = var.refresh_egress.mode == "nat" ? [for az in sort(keys(var.refresh_egress.subnets)) : var.refresh_egress.subnets[az]] : []
    }
  }
  refresh_job_environment = var.refresh_egress.mode != "proxy" ? {} : {
    for job in var.refresh_egress.jobs : job => {
      HTTPS_PROXY = var.refresh_egress.proxy_url
      NO_PROXY    = "169.254.169.254,169.254.170.2,localhost,.amazonaws.com"
    }
  }
}

module "fsx" {
  source = "../fsx"

  name_prefix       = local.name_prefix
  subnets           = { for az, s in var.subnets : az => { subnet_id = s.subnet_id } }
  security_group_id = module.network.fsx_security_group_id
  kms_key_arn       = module.storage.kms_key_arn
  database_bucket   = module.storage.database_bucket
  database_prefix   = module.storage.database_prefix
  scratch_bucket    = module.storage.scratch_bucket
  file_systems = {
    database = { storage_capacity = var.fsx.database_storage_capacity, per_unit_storage_throughput = var.fsx.database_throughput_per_tib }
    scratch  = { storage_capacity = var.fsx.scratch_storage_capacity, per_unit_storage_throughput = var.fsx.scratch_throughput_per_tib }
  }
  backup_retention_days = var.fsx.backup_retention_days
  skip_final_backup     = var.fsx.skip_final_backup
}

module "ecr" {
  source = "../ecr"

  name_prefix              = local.name_prefix
  repositories             = { for image in local.images : image => { force_delete = var.ecr_force_delete } }
  kms_key_arn              = module.storage.kms_key_arn
  pull_through_cache_rules = var.pull_through_cache_rules
  permissions_boundary_arn = var.permissions_boundary_arn
}

module "lambdas" {
  source = "../lambdas"

  name_prefix          = local.name_prefix
  package_dir          = var.lambda_package_dir
  functions            = local.lambda_functions
  role_arns            = module.iam.lambda_role_arns
  layer_arns           = var.lambda_layer_arns
  dependency_layer_zip = var.lambda_dependency_layer_zip
  kms_key_arn          = module.storage.kms_key_arn
  log_retention_days   = var.log_retention_days
  environment = {
    FOLDSTACK_SCRATCH_ROOT            = module.storage.scratch_root_uri
    FOLDSTACK_ALLOWED_INPUT_PREFIXES  = join(",", module.storage.allowed_input_prefixes)
    FOLDSTACK_ALLOWED_OUTPUT_PREFIXES = join(",", module.storage.allowed_output_prefixes)
    FOLDSTACK_CACHE_ROOT              = module.storage.cache_root_uri
    FOLDSTACK_DB_ROOT                 = "s3://${module.storage.database_bucket}/${trimsuffix(module.storage.database_prefix, "/")}"
    FOLDSTACK_SIZE_CLASSES            = jsonencode(local.specs[var.client_workflow].size_classes)
    # Fold's size classes: another workflow's Validate Input gets its own in the event
    # (rendered from its jobs.yaml into the definition), as the Lambdas serve every workflow.
    FOLDSTACK_SCRATCH_OWNER = local.container_user
    FOLDSTACK_LOG_LEVEL     = var.lambda_log_level
    # the manifest's provenance names the code that collected it: CI deploys the Lambdas
    # and the images of one commit together and tags the images with its SHA
    FOLDSTACK_GIT_COMMIT = var.image_tag
    # Publish Batch asks Batch and ECS which instance type each job ran on
    # (foldstack.tasks.instances; the local engine leaves it unset)
    FOLDSTACK_INSTANCE_LOOKUP = "batch"
  }
}

module "iam" {
  source = "../iam"

  name_prefix              = local.name_prefix
  permissions_boundary_arn = var.permissions_boundary_arn
  kms_key_arns = distinct(concat(
    [module.storage.kms_key_arn],
    [for l in values(var.data_lake_locations) : l.kms_key_arn if l.kms_key_arn != null],
  ))
  scratch_bucket_arn   = module.storage.scratch_bucket_arn
  database_bucket_arn  = module.storage.database_bucket_arn
  database_kms_key_arn = module.storage.kms_key_arn
  cache_prefix         = module.storage.cache_prefix
  database_prefix      = module.storage.database_prefix
  upload_prefix        = module.storage.upload_prefix
  data_lake_locations = {
    for k, l in module.storage.data_lake_locations : k => { bucket_arn = l.bucket_arn, prefix = l.prefix, access = l.access }
  }
  job_roles = { for job in local.job_names : job => {
    cache_access    = lookup(var.job_cache_access, job, "none")
    database_access = contains(local.database_publish_jobs, job) ? "publish" : "none"
  } }
  lambda_roles = {
    for k, d in local.lambda_defaults : k => merge(d.access, { log_group_arn = module.lambdas.log_group_arns[k] })
  }
  state_machine = {
    job_queue_arns      = values(module.batch.job_queue_arns)
    job_definition_arns = flatten([for wf, defs in module.batch.job_definition_arns : values(defs)])
    lambda_arns         = values(module.lambdas.function_arns)
    read_cache          = true
  }
}

module "batch" {
  source = "../batch"

  name_prefix          = local.name_prefix
  job_spec_files       = local.job_spec_files
  subnets              = { for az, s in var.subnets : az => { subnet_id = s.subnet_id } }
  security_group_ids   = [module.network.compute_security_group_id]
  service_role_arn     = module.iam.batch_service_role_arn
  instance_profile_arn = module.iam.instance_profile_arn
  job_role_arns        = module.iam.job_role_arns
  repository_urls      = module.ecr.repository_urls
  image_tag            = var.image_tag
  file_systems         = module.fsx.file_systems
  kms_key_arn          = module.storage.kms_key_arn
  compute_environments = var.compute_environments
  queue_network        = local.refresh_queue_network
  job_environment      = local.refresh_job_environment
  default_max_vcpus    = var.default_max_vcpus
  cpu_instance_types   = var.cpu_instance_types
  scratch_mount        = local.scratch_mount
  db_mount             = local.db_mount
  log_retention_days   = var.log_retention_days
  container_user       = local.container_user
}

module "workflow" {
  source   = "../workflow"
  for_each = var.workflows

  name                   = "${local.name_prefix}-${each.key}"
  workflow_name          = each.key
  definition_file        = each.value.definition_file
  job_spec_file          = each.value.job_spec_file
  role_arn               = module.iam.state_machine_role_arn
  lambda_arns            = module.lambdas.function_arns
  queue_arns             = module.batch.job_queue_arns
  job_definition_arns    = module.batch.job_definition_arns[each.key]
  scratch_mount          = local.scratch_mount
  db_mount               = local.db_mount
  weights_dir            = local.weights_dir
  extra_template_vars    = merge({ db_uri = local.db_uri }, lookup(var.extra_template_vars, each.key, {}))
  include_execution_data = var.include_execution_data
  log_retention_days     = var.log_retention_days
  kms_key_arn            = module.storage.kms_key_arn
}

module "monitoring" {
  source = "../monitoring"

  name_prefix = local.name_prefix
  # every deployed workflow's state machine gets its own execution alarms
  state_machine_arns    = { for wf, m in module.workflow : wf => m.state_machine_arn }
  job_queue_arns        = module.batch.job_queue_arns
  lambda_function_names = module.lambdas.function_names
  kms_key_arn           = module.storage.kms_key_arn
  alarm_emails          = var.alarm_emails
}

module "config" {
  source = "../config"

  environment             = var.environment
  state_machine_arn       = module.workflow[var.client_workflow].state_machine_arn
  workflows               = { for wf, w in var.workflows : wf => module.workflow[wf].state_machine_arn if w.submitted_by == "client" }
  input_prefix            = module.storage.upload_uri
  allowed_input_prefixes  = module.storage.allowed_input_prefixes
  output_prefix           = module.storage.data_lake_locations[var.default_output_location].uri
  scratch_bucket          = module.storage.scratch_bucket
  region                  = data.aws_region.current.name
  log_group_batch         = module.batch.log_group_name
  queues                  = module.batch.job_queue_arns
  msa_cache_uri           = module.storage.cache_root_uri
  allowed_output_prefixes = module.storage.allowed_output_prefixes
  size_classes            = local.specs[var.client_workflow].size_classes
  db_uri                  = "s3://${module.storage.database_bucket}/${module.storage.database_prefix}"
}
