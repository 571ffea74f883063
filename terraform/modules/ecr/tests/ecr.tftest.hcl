mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

variables {
  name_prefix  = "foldstack-dev"
  kms_key_arn  = "arn:aws:kms:eu-west-1:111111111111:key/0b6f7c8e-1111-4d2b-9a44-123456789abc"
  repositories = { msa = {}, predict = {} }
}

run "repositories_are_immutable_scanned_and_encrypted" {
  command = plan

  assert {
    condition = alltrue([for r in aws_ecr_repository.this :
      r.image_tag_mutability == "IMMUTABLE" && one(r.image_scanning_configuration).scan_on_push &&
    one(r.encryption_configuration).encryption_type == "KMS" && one(r.encryption_configuration).kms_key == var.kms_key_arn]) && length(aws_ecr_repository.this) == 2
    error_message = "Every repository: immutable tags, scan on push, KMS."
  }

  assert {
    condition     = length(aws_ecr_lifecycle_policy.this) == 2 && alltrue([for p in aws_ecr_lifecycle_policy.this : length(jsondecode(p.policy).rules) == 2])
    error_message = "Every repository has a lifecycle policy."
  }

  assert {
    condition     = aws_ecr_pull_through_cache_rule.this["ecr-public"].upstream_registry_url == "public.ecr.aws"
    error_message = "Base images come through our pull-through cache."
  }
}

run "creation_template_names_the_role_ecr_assumes_for_kms" {
  command = plan

  assert {
    condition     = aws_ecr_repository_creation_template.pull_through["ecr-public"].custom_role_arn == aws_iam_role.repository_creation[0].arn && one(aws_ecr_repository_creation_template.pull_through["ecr-public"].encryption_configuration).encryption_type == "KMS"
    error_message = "A KMS creation template must set custom_role_arn (AWS requires it)."
  }

  assert {
    condition     = jsondecode(aws_iam_role.repository_creation[0].assume_role_policy).Statement[0].Principal.Service == "ecr.amazonaws.com"
    error_message = "ECR assumes the repository-creation role."
  }

  assert {
    condition = alltrue([for s in jsondecode(aws_iam_role_policy.repository_creation[0].policy).Statement :
      s.Sid != "EncryptWithStackKey" || (contains(s.Action, "kms:CreateGrant") && s.Resource == [var.kms_key_arn])
      ]) && one([for s in jsondecode(aws_iam_role_policy.repository_creation[0].policy).Statement :
    s.Resource if s.Sid == "CreatePullThroughRepositories"]) == ["arn:aws:ecr:eu-west-1:111111111111:repository/ecr-public/*"]
    error_message = "The role may create repositories under the cache prefixes and use the stack key, nothing else."
  }
}

run "no_cache_rules_no_template_no_role" {
  command = plan

  variables {
    pull_through_cache_rules = {}
  }

  assert {
    condition     = length(aws_ecr_repository_creation_template.pull_through) == 0 && length(aws_iam_role.repository_creation) == 0
    error_message = "Without pull-through rules there is no template and no role."
  }
}

run "repositories_keep_images_unless_the_env_is_disposable" {
  command = plan

  variables {
    repositories = { msa = {}, predict = { force_delete = true } }
  }

  assert {
    condition     = !aws_ecr_repository.this["msa"].force_delete && aws_ecr_repository.this["predict"].force_delete
    error_message = "force_delete is off by default and set per repository (platform: ecr_force_delete)."
  }
}
