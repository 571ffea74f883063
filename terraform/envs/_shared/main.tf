# This environment holds no resources of its own: one call to modules/platform.
locals {
  repo_root = "${path.root}/../../.."
  # The workload registry (statemachines/workloads.yaml): one state machine per entry, from
  # its rendered ASL and its jobs.yaml; adding a workflow needs no edit here.
  workloads = yamldecode(file("${local.repo_root}/statemachines/workloads.yaml"))
}

module "platform" {
  source = "../../modules/platform"

  environment = var.environment
  vpc_id      = var.vpc_id
  subnets     = var.subnets

  workflows = {
    for name, w in local.workloads : name => {
      definition_file = "${local.repo_root}/statemachines/rendered/${name}.asl.json"
      job_spec_file   = "${local.repo_root}/statemachines/${name}/jobs.yaml"
      # client: published in the SSM workflows map; operator: started by operators only
      submitted_by = w.submitted_by
    }
  }

  data_lake_locations         = var.data_lake_locations
  default_output_location     = var.default_output_location
  lambda_package_dir          = var.lambda_package_dir
  lambda_settings             = var.lambda_settings
  lambda_dependency_layer_zip = var.lambda_dependency_layer_zip
  image_tag                   = var.image_tag
  compute_environments        = var.compute_environments
  refresh_egress              = var.refresh_egress
  fsx                         = var.fsx
  storage                     = var.storage
  ecr_force_delete            = var.ecr_force_delete
  log_retention_days          = var.log_retention_days
  alarm_emails                = var.alarm_emails
  permissions_boundary_arn    = var.permissions_boundary_arn
}
