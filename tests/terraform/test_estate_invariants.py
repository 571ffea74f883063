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


# The one rule allowed a CIDR to the world: the opt-in HTTPS egress of the database refresh
# jobs' own security group (refresh_egress.mode = "nat"), checked below.
REFRESH_EGRESS_RULE = ("aws_vpc_security_group_egress_rule", "refresh_egress")


def test_security_groups_never_open_to_the_world():
    for kind in ("aws_vpc_security_group_egress_rule", "aws_vpc_security_group_ingress_rule", "aws_security_group"):
        for path, name, body in blocks(kind):
            if (kind, name) == REFRESH_EGRESS_RULE and path.parent.name == "network":
                continue
            assert "0.0.0.0/0" not in body and "::/0" not in body, f"{path.name}: {kind}.{name}"


def test_only_the_refresh_jobs_can_get_egress_and_only_when_asked():
    """refresh_egress is off by default everywhere; when on, its security group and rule
    exist once, the rule sits on that group only, and that group reaches only the
    compute environment of the queue refresh_egress names (the refresh_databases
    workflow's own queue, which no fold job uses)."""
    import yaml

    (rule,) = [(p, b) for p, n, b in blocks(REFRESH_EGRESS_RULE[0]) if n == REFRESH_EGRESS_RULE[1]]
    (group,) = [(p, b) for p, n, b in blocks("aws_security_group") if n == "refresh_egress"]
    gate = 'count = var.refresh_egress.mode == "none" ? 0 : 1'
    for path, body in (rule, group):
        assert path.parent.name == "network" and gate in re.sub(r"\s+", " ", body), f"{path}: not gated"
    assert "security_group_id = aws_security_group.refresh_egress[0].id" in re.sub(r"\s+", " ", rule[1])
    for path in TF_FILES:  # the group is handed out once: the network output the platform maps to one queue
        text = path.read_text()
        uses = re.findall(r"aws_security_group\.refresh_egress|refresh_egress_security_group_id", text)
        if path.parent.name == "network":
            continue
        assert not uses or path.parts[-3:] == ("modules", "platform", "main.tf"), f"{path}: uses the egress group"
    platform = (TERRAFORM_DIR / "modules" / "platform" / "main.tf").read_text()
    assert re.search(r'refresh_queue_network = var\.refresh_egress\.mode == "none" \? \{\} : \{\s*'
                     r'\(var\.refresh_egress\.queue\) = \{', platform), "the egress group goes to one queue"
    # off by default at every level
    for rel in ("envs/_shared/variables.tf", "modules/platform/variables.tf", "modules/network/variables.tf"):
        text = (TERRAFORM_DIR / rel).read_text()
        block = text[text.index('variable "refresh_egress"'):]
        assert 'mode       = optional(string, "none")' in block and "default = {}" in block, rel
    platform_vars = (TERRAFORM_DIR / "modules/platform/variables.tf").read_text()
    assert 'queue      = optional(string, "cpu-refresh")' in platform_vars
    # that queue belongs to the refresh workflow alone
    statemachines = TERRAFORM_DIR.parent / "statemachines"
    for jobs_yaml in statemachines.glob("*/jobs.yaml"):
        spec = yaml.safe_load(jobs_yaml.read_text())
        jobs = spec["jobs"].values()
        queues = {j.get("queue") for j in jobs} | {j.get("fallback_queue") for j in jobs}
        queues |= {q for j in jobs for q in (j.get("queue_by_size_class") or {}).values()}
        if jobs_yaml.parent.name == "refresh_databases":
            assert queues == {"cpu-refresh", None}, queues
        else:
            assert "cpu-refresh" not in queues and "cpu-refresh" not in spec["queues"], jobs_yaml


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
