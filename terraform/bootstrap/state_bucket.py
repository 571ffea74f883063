#!/usr/bin/env python3
"""Create (or bring into line) one environment's Terraform state bucket. Idempotent.

The bucket must exist before `terraform init` can use the S3 backend, so it cannot be
managed by the state it holds. `make bootstrap ENV=<env>` runs this with the bucket and
region of `terraform/envs/<env>/backend.hcl`, then applies the env's ECR repositories
(docs/operations.md, "A new account"). What it sets, every run:

- versioning (every state version is kept; S3 native locking needs nothing else);
- default encryption SSE-KMS with the account's aws/s3 key and a bucket key;
- public access blocked, object ownership BucketOwnerEnforced (no ACLs);
- a bucket policy that denies any request not made over TLS.

    python3 terraform/bootstrap/state_bucket.py --backend-config terraform/envs/dev/backend.hcl
    python3 terraform/bootstrap/state_bucket.py --bucket B --region R [--endpoint-url URL]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any


def read_backend_config(path: Path) -> dict[str, str]:
    """bucket/key/region of a partial S3 backend configuration (key = "value" lines)."""
    values = dict(re.findall(r'^\s*(\w+)\s*=\s*"([^"]*)"', path.read_text(), re.M))
    missing = [k for k in ("bucket", "region") if not values.get(k)]
    if missing:
        raise SystemExit(f"{path}: missing {', '.join(missing)}")
    return values


def tls_only_policy(bucket: str, partition: str = "aws") -> dict[str, Any]:
    arn = f"arn:{partition}:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }


def ensure_state_bucket(s3: Any, bucket: str, region: str) -> list[str]:
    """Create the bucket if needed and apply every setting; returns what was done."""
    from botocore.exceptions import ClientError

    done = []
    try:
        s3.head_bucket(Bucket=bucket)
        done.append(f"bucket {bucket} exists")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise  # 403: the name is taken by another account, or we may not read it
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
        done.append(f"bucket {bucket} created in {region}")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    partition = "aws-cn" if region.startswith("cn-") else ("aws-us-gov" if region.startswith("us-gov-") else "aws")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_policy(bucket, partition)))
    done.append("versioning, SSE-KMS, public access block, BucketOwnerEnforced, TLS-only policy set")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend-config", type=Path, help="an env's backend.hcl (bucket, region)")
    parser.add_argument("--bucket")
    parser.add_argument("--region")
    parser.add_argument("--endpoint-url", help="another S3 endpoint (tests)")
    args = parser.parse_args(argv)
    if args.backend_config:
        cfg = read_backend_config(args.backend_config)
        args.bucket, args.region = args.bucket or cfg["bucket"], args.region or cfg["region"]
    if not (args.bucket and args.region):
        parser.error("give --backend-config, or --bucket and --region")
    import boto3

    s3 = boto3.session.Session(region_name=args.region).client("s3", endpoint_url=args.endpoint_url)
    for line in ensure_state_bucket(s3, args.bucket, args.region):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
