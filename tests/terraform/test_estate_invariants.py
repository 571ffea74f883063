"""Estate invariants over every Terraform file, read statically so they
hold for any module, including ones added later. The plan-level checks (scoped IAM
statements, bucket encryption, IMDSv2, ...) are the modules' `terraform test` runs and
checkov in test_terraform.py; this file covers what is clearest as a rule over the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import TERRAFORM_DIR

TF_FILES = sorted(p for p in TERRAFORM_DIR.rglob("*.tf") if ".terraform" not in p.parts and not p.is_symlink())
RESOURCE = re.compile(r'^resource\s+"([a-z0-9_]+)"\s+"([a-zA-Z0-9_-]+)"\s*\{', re.M)


def blocks(kind: str) -> list[tuple[Path, str, str]]:
    """(file, resource name, body) of every `resource "<kind>"` block (brace-matched)."""
    found = []
    for path in TF_FILES:
        text = path.read_text()
        for m in RESOURCE.finditer(text):
            if m.group(1) != kind:
                continue
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            found.append((path, m.group(2), text[m.end():i - 1]))
    return found


def test_there_is_terraform_to_check():
    assert len(TF_FILES) > 30 and blocks("aws_cloudwatch_log_group")


def test_no_aws_managed_full_access_or_administrator_policies():
    offenders = [
        f"{p.relative_to(TERRAFORM_DIR)}: {line.strip()}"
        for p in TF_FILES for line in p.read_text().splitlines()
        if re.search(r"iam::aws:policy/.*(FullAccess|AdministratorAccess|PowerUserAccess)", line)
    ]
    assert offenders == []


# Service-wide action wildcards allowed, each with why; anything else fails.
SERVICE_WILDCARDS_ALLOWED = {
    ("modules/storage/main.tf", "s3:*"): "the TLS-only bucket policy's Deny statement",
    ("modules/storage/main.tf", "kms:*"): "the key policy's delegation to IAM (account root), AWS's default",
}


def test_no_wildcard_actions():
    bare, service = [], []
    for p in TF_FILES:
        rel = str(p.relative_to(TERRAFORM_DIR))
        for line in p.read_text().splitlines():
            if re.search(r'(actions|Action)\s*=\s*\[?\s*"\*"', line):
                bare.append(f"{rel}: {line.strip()}")
            for action in re.findall(r'"([a-z0-9-]+:\*)"', line):
                if (rel, action) not in SERVICE_WILDCARDS_ALLOWED:
                    service.append(f"{rel}: {line.strip()}")
    assert bare == [] and service == []


@pytest.mark.parametrize("kind", ["aws_internet_gateway", "aws_nat_gateway", "aws_egress_only_internet_gateway",
                                  "aws_route", "aws_eip"])
def test_compute_gets_no_route_to_the_internet(kind):
    assert blocks(kind) == [], f"{kind} would give compute a path to the internet; use VPC endpoints"


def test_security_groups_never_open_to_the_world():
    for kind in ("aws_vpc_security_group_egress_rule", "aws_vpc_security_group_ingress_rule", "aws_security_group"):
        for path, name, body in blocks(kind):
            assert "0.0.0.0/0" not in body and "::/0" not in body, f"{path.name}: {kind}.{name}"


def test_every_log_group_is_encrypted_and_expires():
    for path, name, body in blocks("aws_cloudwatch_log_group"):
        assert re.search(r"^\s*kms_key_id\s*=", body, re.M), f"{path.name}: log group {name} has no kms_key_id"
        assert re.search(r"^\s*retention_in_days\s*=", body, re.M), f"{path.name}: log group {name} never expires"


def test_every_bucket_has_kms_encryption_public_access_block_and_tls_only_policy():
    buckets = {name for _, name, _ in blocks("aws_s3_bucket")}
    assert buckets
    for kind in ("aws_s3_bucket_server_side_encryption_configuration", "aws_s3_bucket_public_access_block",
                 "aws_s3_bucket_policy"):
        assert blocks(kind), f"no {kind}"
    sse = " ".join(body for _, _, body in blocks("aws_s3_bucket_server_side_encryption_configuration"))
    assert "aws:kms" in sse
    policies = " ".join(p.read_text() for p in TF_FILES if "aws:SecureTransport" in p.read_text())
    assert "aws:SecureTransport" in policies


def test_launch_templates_require_imdsv2():
    templates = blocks("aws_launch_template")
    assert templates
    for path, name, body in templates:
        assert re.search(r'http_tokens\s*=\s*"required"', body), f"{path.name}: {name} allows IMDSv1"
        assert re.search(r"http_put_response_hop_limit\s*=\s*1\b", body), f"{path.name}: {name} hop limit"
