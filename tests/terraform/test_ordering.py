"""Orderings plan-mode assertions cannot see, read from `terraform graph` of the platform
module (found by the emulator apply/destroy, tests/terraform/test_emulator_deploy.py):

- S3 checks the access-log bucket's policy when logging is enabled: every
  aws_s3_bucket_logging comes after the bucket policies (moto refused PutBucketLogging in
  3 of 4 clean applies without it);
- a Batch compute environment comes after the policy attachments of its service role and
  instance role (created after them, destroyed before them), as terraform-aws-modules'
  batch module orders them.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from .conftest import terraform_bin

pytestmark = pytest.mark.terraform


@pytest.fixture(scope="module")
def edges(tf) -> set[tuple[str, str]]:
    root = tf.root / "terraform" / "modules" / "platform"
    assert tf.results["modules/platform"]["init"].rc == 0, tf.results["modules/platform"]["init"].explain()
    proc = subprocess.run([terraform_bin(), "graph", "-no-color"], cwd=root, env=tf.env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return set(re.findall(r'^\s*"([^"]+)" -> "([^"]+)"', proc.stdout, re.M))


def _after(edges: set[tuple[str, str]], node: str, dependency: str) -> bool:
    """`node` depends (directly or through other nodes) on `dependency`."""
    seen, todo = set(), [node]
    while todo:
        current = todo.pop()
        for src, dst in edges:
            if src == current and dst not in seen:
                if dst == dependency:
                    return True
                seen.add(dst)
                todo.append(dst)
    return False


def test_bucket_logging_comes_after_the_bucket_policies(edges):
    assert _after(edges, "module.storage.aws_s3_bucket_logging.this", "module.storage.aws_s3_bucket_policy.this")


@pytest.mark.parametrize("attachment", ["batch_service", "instance_ecs"])
def test_compute_environments_come_after_their_iam_policy_attachments(edges, attachment):
    assert _after(edges, "module.batch.aws_batch_compute_environment.this",
                  f"module.iam.aws_iam_role_policy_attachment.{attachment}")


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_disposable_envs_delete_their_registries_like_their_buckets(env):
    """A used dev env must destroy (RepositoryNotEmptyException otherwise, reproduced on the
    emulator); prod keeps its images as it keeps its buckets."""
    from .conftest import TERRAFORM_DIR

    tfvars = (TERRAFORM_DIR / "envs" / env / "terraform.tfvars").read_text()
    buckets = re.search(r"^\s*force_destroy\s*=\s*(true|false)", tfvars, re.M).group(1)
    registries = re.search(r"^ecr_force_delete\s*=\s*(true|false)", tfvars, re.M).group(1)
    assert buckets == registries == ("true" if env == "dev" else "false")
    platform = (TERRAFORM_DIR / "modules" / "platform" / "main.tf").read_text()
    assert "force_delete = var.ecr_force_delete" in platform
