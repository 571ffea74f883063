# The workflow module's test inputs, shared by every test file in this directory (terraform test
# loads .tfvars files from it); a file or run block sets only what differs.
workflow_name = "fold"
name          = "foldstack-dev-fold"
job_spec_file = "../../../statemachines/fold/jobs.yaml"
role_arn      = "arn:aws:iam::111111111111:role/foldstack-dev-state-machine"
kms_key_arn   = "arn:aws:kms:eu-west-1:111111111111:key/0b6f7c8e-1111-4d2b-9a44-123456789abc"
lambda_arns = {
  validate_input  = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-validate-input"
  stage_inputs    = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-stage-inputs"
  collect_outputs = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-collect-outputs"
  cleanup         = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-cleanup"
  msa_cache       = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-msa-cache"
  publish_batch   = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-publish-batch"
  plan_batches    = "arn:aws:lambda:eu-west-1:111111111111:function:foldstack-dev-plan-batches"
}
queue_arns = {
  "cpu-spot"     = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cpu-spot"
  "cpu-ondemand" = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-cpu-ondemand"
  "gpu-small"    = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-gpu-small"
  "gpu-medium"   = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-gpu-medium"
  "gpu-large"    = "arn:aws:batch:eu-west-1:111111111111:job-queue/foldstack-dev-gpu-large"
}
job_definition_arns = {
  msa            = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-fold-msa:1"
  msa_gpu        = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-fold-msa_gpu:1"
  predict_small  = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-fold-predict-small:1"
  predict_medium = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-fold-predict-medium:1"
  predict_large  = "arn:aws:batch:eu-west-1:111111111111:job-definition/foldstack-dev-fold-predict-large:1"
}
