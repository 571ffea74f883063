data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
}

resource "aws_ecr_repository" "this" {
  for_each = var.repositories

  name                 = "${var.name_prefix}/${each.key}"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = each.value.force_delete

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  for_each = var.repositories

  repository = aws_ecr_repository.this[each.key].name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Expire untagged images"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = each.value.expire_untagged_days
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the newest tagged images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = each.value.keep_tagged_images
        }
        action = { type = "expire" }
      },
    ]
  })
}

resource "aws_ecr_pull_through_cache_rule" "this" {
  for_each = var.pull_through_cache_rules

  ecr_repository_prefix = each.key
  upstream_registry_url = each.value.upstream_registry_url
  credential_arn        = each.value.credential_arn
}

# Repositories the pull-through cache creates on first pull get the same scanning,
# immutability and encryption as ours.
resource "aws_ecr_repository_creation_template" "pull_through" {
  for_each = var.pull_through_cache_rules

  prefix               = each.key
  description          = "Base images cached from ${each.value.upstream_registry_url}"
  applied_for          = ["PULL_THROUGH_CACHE"]
  image_tag_mutability = "IMMUTABLE"
  # A template that encrypts with KMS (or tags) must name the role ECR assumes to create
  # the repositories; without it AWS rejects the template.
  custom_role_arn = aws_iam_role.repository_creation[0].arn

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }

  depends_on = [aws_iam_role_policy.repository_creation]
}

# The role ECR assumes to create pull-through repositories from the template: create
# (and tag) repositories under the cache prefixes, and let them use our KMS key.
resource "aws_iam_role" "repository_creation" {
  count = length(var.pull_through_cache_rules) > 0 ? 1 : 0

  name                 = "${var.name_prefix}-ecr-repository-creation"
  permissions_boundary = var.permissions_boundary_arn
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecr.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role_policy" "repository_creation" {
  count = length(var.pull_through_cache_rules) > 0 ? 1 : 0

  name = "repository-creation"
  role = aws_iam_role.repository_creation[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "CreatePullThroughRepositories"
        Effect   = "Allow"
        Action   = ["ecr:CreateRepository", "ecr:ReplicateImage", "ecr:TagResource"]
        Resource = [for prefix in keys(var.pull_through_cache_rules) : "arn:${local.partition}:ecr:${local.region}:${local.account_id}:repository/${prefix}/*"]
      },
      {
        Sid      = "EncryptWithStackKey"
        Effect   = "Allow"
        Action   = ["kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey"]
        Resource = [var.kms_key_arn]
      },
    ]
  })
}
