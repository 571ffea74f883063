# Partial S3 backend configuration: terraform init -backend-config=backend.hcl
# Placeholder values: replace the bucket with your state bucket (versioned, SSE-KMS).
bucket = "foldstack-tfstate-222222222222"
key    = "foldstack/prod/terraform.tfstate"
region = "eu-west-1"
