locals {
  prefix = "/foldstack/${var.environment}"

  # Exactly the names the client reads (see README.md); values are plain text, not secrets.
  parameters = {
    state_machine_arn = { type = "String", value = var.state_machine_arn, description = "ARN of the fold state machine" }
    # Every workflow users submit (workloads.yaml `submitted_by: client`): `--workflow <name>`.
    workflows              = { type = "String", value = jsonencode(var.workflows), description = "JSON map: client workflow name -> state machine ARN" }
    input_prefix           = { type = "String", value = var.input_prefix, description = "s3:// prefix the client uploads local input files to" }
    allowed_input_prefixes = { type = "StringList", value = join(",", var.allowed_input_prefixes), description = "s3:// prefixes inputs may come from (comma-separated)" }
    output_prefix          = { type = "String", value = var.output_prefix, description = "Default s3:// output URI" }
    scratch_bucket         = { type = "String", value = var.scratch_bucket, description = "Scratch bucket name" }
    region                 = { type = "String", value = var.region, description = "AWS Region of the stack" }
    log_group_batch        = { type = "String", value = var.log_group_batch, description = "CloudWatch log group of the Batch jobs" }
    queues                 = { type = "String", value = jsonencode(var.queues), description = "JSON map: logical queue name -> job queue ARN" }
    msa_cache_uri          = { type = "String", value = var.msa_cache_uri, description = "s3:// URI of the MSA cache root" }
    # What the client's local validation needs to give the same verdict as Validate Input.
    allowed_output_prefixes = { type = "StringList", value = join(",", var.allowed_output_prefixes), description = "s3:// prefixes outputs may go to (comma-separated)" }
    size_classes            = { type = "String", value = jsonencode({ for c, sc in var.size_classes : c => { for k, v in sc : k => v if v != null } }), description = "JSON: GPU size classes (jobs.yaml size_classes)" }
    db_uri                  = { type = "String", value = var.db_uri, description = "s3:// prefix of the sequence databases and weights" }
  }
}

resource "aws_ssm_parameter" "this" {
  for_each = local.parameters

  #checkov:skip=CKV2_AWS_34:Non-secret discovery values (ARNs, URIs) the client reads without kms:Decrypt; nothing sensitive is stored.
  name        = "${local.prefix}/${each.key}"
  description = each.value.description
  type        = each.value.type
  value       = each.value.value
  tier        = "Standard"
}
