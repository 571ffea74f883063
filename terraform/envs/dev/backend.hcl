# Partial S3 backend configuration: terraform init -backend-config=backend.hcl
# Placeholder values: replace the bucket with your state bucket (versioned, SSE-KMS).
bucket = "foldstack-tfstate-111111111111"
key    = "foldstack/dev/terraform.tfstate"
region = "eu-west-1"
