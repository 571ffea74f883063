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
