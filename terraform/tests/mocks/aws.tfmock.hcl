# Shared mock data for `terraform test` (mock_provider "aws" { source = "../../tests/mocks" }).
# Computed attributes get realistically shaped values (the provider validates ARNs), and
# the test files set override_during = plan so plan-mode assertions can see them.


mock_data "aws_caller_identity" {
  defaults = {
    account_id = "111111111111"
    arn        = "arn:aws:iam::111111111111:user/terraform-test"
    user_id    = "AIDAEXAMPLEEXAMPLE00"
  }
}

mock_data "aws_partition" {
  defaults = {
    partition          = "aws"
    dns_suffix         = "amazonaws.com"
    reverse_dns_prefix = "com.amazonaws"
  }
}

mock_data "aws_region" {
  defaults = {
    name        = "eu-west-1"
    id          = "eu-west-1"
    description = "Europe (Ireland)"
    endpoint    = "ec2.eu-west-1.amazonaws.com"
  }
}

mock_data "aws_vpc" {
  defaults = {
    cidr_block = "10.20.0.0/16"
    arn        = "arn:aws:ec2:eu-west-1:111111111111:vpc/vpc-0123456789abcdef0"
  }
}

mock_data "aws_ec2_managed_prefix_list" {
  defaults = {
    id   = "pl-6da54004"
    arn  = "arn:aws:ec2:eu-west-1:aws:prefix-list/pl-6da54004"
    name = "com.amazonaws.eu-west-1.s3"
  }
}

mock_resource "aws_kms_key" {
  defaults = {
    arn    = "arn:aws:kms:eu-west-1:111111111111:key/0b6f7c8e-1111-4d2b-9a44-123456789abc"
    key_id = "0b6f7c8e-1111-4d2b-9a44-123456789abc"
  }
}

mock_resource "aws_s3_bucket" {
  defaults = {
    arn                         = "arn:aws:s3:::mock-bucket"
    bucket_domain_name          = "mock-bucket.s3.amazonaws.com"
    bucket_regional_domain_name = "mock-bucket.s3.eu-west-1.amazonaws.com"
    hosted_zone_id              = "Z1BKCTXD74EZPE"
    region                      = "eu-west-1"
  }
}

mock_resource "aws_iam_role" {
  defaults = {
    arn       = "arn:aws:iam::111111111111:role/mock-role"
    unique_id = "AROAEXAMPLEEXAMPLE00"
  }
}

mock_resource "aws_iam_instance_profile" {
  defaults = {
    arn = "arn:aws:iam::111111111111:instance-profile/mock-profile"
  }
}

mock_resource "aws_security_group" {
  defaults = {
    id  = "sg-0123456789abcdef0"
    arn = "arn:aws:ec2:eu-west-1:111111111111:security-group/sg-0123456789abcdef0"
  }
}

mock_resource "aws_vpc_endpoint" {
  defaults = {
    id             = "vpce-0123456789abcdef0"
    prefix_list_id = "pl-6da54004"
    arn            = "arn:aws:ec2:eu-west-1:111111111111:vpc-endpoint/vpce-0123456789abcdef0"
  }
}

mock_resource "aws_fsx_lustre_file_system" {
  defaults = {
    id         = "fs-0123456789abcdef0"
    arn        = "arn:aws:fsx:eu-west-1:111111111111:file-system/fs-0123456789abcdef0"
    dns_name   = "fs-0123456789abcdef0.fsx.eu-west-1.amazonaws.com"
    mount_name = "abcdefgh"
  }
}

mock_resource "aws_ecr_repository" {
  defaults = {
    arn            = "arn:aws:ecr:eu-west-1:111111111111:repository/mock"
    repository_url = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/mock"
    registry_id    = "111111111111"
  }
}

mock_resource "aws_launch_template" {
  defaults = {
    id             = "lt-0123456789abcdef0"
    arn            = "arn:aws:ec2:eu-west-1:111111111111:launch-template/lt-0123456789abcdef0"
    latest_version = 3
  }
}

mock_resource "aws_batch_compute_environment" {
  defaults = {
    arn             = "arn:aws:batch:eu-west-1:111111111111:compute-environment/mock-ce"
    ecs_cluster_arn = "arn:aws:ecs:eu-west-1:111111111111:cluster/mock-ce"
  }
}

mock_resource "aws_batch_job_queue" {
  defaults = {
    arn = "arn:aws:batch:eu-west-1:111111111111:job-queue/mock-queue"
  }
}

mock_resource "aws_batch_job_definition" {
  defaults = {
    arn        = "arn:aws:batch:eu-west-1:111111111111:job-definition/mock-jobdef:1"
    arn_prefix = "arn:aws:batch:eu-west-1:111111111111:job-definition/mock-jobdef"
    revision   = 1
  }
}

mock_resource "aws_cloudwatch_log_group" {
  defaults = {
    arn = "arn:aws:logs:eu-west-1:111111111111:log-group:mock"
  }
}

mock_resource "aws_lambda_function" {
  defaults = {
    arn           = "arn:aws:lambda:eu-west-1:111111111111:function:mock"
    invoke_arn    = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:111111111111:function:mock/invocations"
    qualified_arn = "arn:aws:lambda:eu-west-1:111111111111:function:mock:$LATEST"
    version       = "$LATEST"
  }
}

mock_resource "aws_sfn_state_machine" {
  defaults = {
    arn = "arn:aws:states:eu-west-1:111111111111:stateMachine:mock"
  }
}

mock_resource "aws_sns_topic" {
  defaults = {
    arn = "arn:aws:sns:eu-west-1:111111111111:mock-alarms"
  }
}

mock_resource "aws_cloudwatch_event_rule" {
  defaults = {
    arn = "arn:aws:events:eu-west-1:111111111111:rule/mock-rule"
  }
}

mock_resource "aws_cloudwatch_metric_alarm" {
  defaults = {
    arn = "arn:aws:cloudwatch:eu-west-1:111111111111:alarm:mock"
  }
}

mock_resource "aws_ssm_parameter" {
  defaults = {
    arn = "arn:aws:ssm:eu-west-1:111111111111:parameter/foldstack/mock"
  }
}

mock_resource "aws_ecr_pull_through_cache_rule" {
  defaults = {
    registry_id = "111111111111"
  }
}
