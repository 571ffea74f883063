"""terraform/envs/dev applied by the real hashicorp/aws provider to a moto server, audited,
used by the real client, then destroyed as a used env.

What plan-mode tests cannot show: ordering between resources, read-back of what AWS
returns, the client against what Terraform really publishes, and a destroy of an env
that has images and databases in it. The env is applied from a saved plan with its
committed lock file (`init -lockfile=readonly`, as the apply job does) through a
provider-endpoint override written into a staged copy (``tests/terraform/emulator``);
the shims moto needs live in ``emulator/moto_shims.py``.

Marked `terraform` and `deploy`: `make test` runs it, `make test-fast` leaves it out,
`make test-deploy` runs it alone.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import emulator
from .conftest import REPO, REQUIRE_TOOLS, _load_script, _stage_copy, need_terraform
from .emulator import state_bucket

pytestmark = [pytest.mark.terraform, pytest.mark.deploy]

ENV = "dev"
PREFIX = f"foldstack-{ENV}"
STATE_BUCKET = f"foldstack-tfstate-{emulator.ACCOUNT}"
LAKE = "foldstack-emulator-lake"
# A used env: images pushed under the tag the job definitions run, a database, weights.
FASTA = b">emu1 stand-in\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKW\n"
STAND_IN_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"digest": "sha256:" + "c" * 64, "size": 2,
               "mediaType": "application/vnd.docker.container.image.v1+json"},
    "layers": [],
}


@dataclass
class Deployment:
    root: Path
    env_dir: Path
    server: emulator.MotoServer
    tf_env: dict[str, str]
    terraform: str
    started: float = field(default_factory=time.monotonic)
    bootstrapped: int = 0
    bootstrap_log: list[str] = field(default_factory=list)
    planned: int = 0
    applied: int = 0
    destroyed: int = 0
    checks: list[str] = field(default_factory=list)
    tfvars: dict[str, Any] = field(default_factory=dict)

    def tf(self, *args: str, timeout: int = 420) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.terraform, *args, "-no-color"], cwd=self.env_dir, env=self.tf_env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        (self.root / f"terraform-{args[0]}.log").write_text(proc.stdout + proc.stderr)
        return proc

    def aws(self, service: str) -> Any:
        return emulator.boto(service, self.server.endpoint)

    def check(self, name: str, ok: bool, detail: Any = "") -> None:
        assert ok, f"{name}: {detail}"
        self.checks.append(name)


def _explain(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\n{(proc.stdout + proc.stderr)[-6000:]}"


def _require_moto_server() -> None:
    try:
        import flask  # noqa: F401  (moto[server])
        import moto  # noqa: F401
    except ImportError as exc:
        message = f"moto[server] is not installed ({exc}): pip install -e '.[dev]'"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    terraform = need_terraform("the emulator deploy")
    _require_moto_server()
    mirror = _load_script("tf_mirror").find_mirror()
    root = tmp_path_factory.mktemp("emulator")
    _stage_copy(root)
    env_dir = root / "terraform" / "envs" / ENV
    # The committed lock file, as the apply job gets it (init -lockfile=readonly below).
    shutil.copy(REPO / "terraform" / "envs" / ENV / ".terraform.lock.hcl", env_dir / ".terraform.lock.hcl")

    tf_env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_VAR_", "AWS_"))}
    tf_env.update(emulator.FAKE_ENV)
    tf_env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
    if mirror is not None:
        (root / "terraform.rc").write_text(_load_script("tf_mirror").cli_config(mirror))
        tf_env["TF_CLI_CONFIG_FILE"] = str(root / "terraform.rc")

    server = emulator.MotoServer(root / "moto.log")
    server.start()
    try:
        network = emulator.create_network(server.endpoint)
        emulator.boto("s3", server.endpoint).create_bucket(
            Bucket=LAKE, CreateBucketConfiguration={"LocationConstraint": emulator.REGION})
        emulator.write_override(env_dir, server.endpoint, root / "terraform.tfstate")
        emulator.write_tfvars(env_dir, network, LAKE)
        dep = Deployment(root=root, env_dir=env_dir, server=server, tf_env=tf_env, terraform=terraform,
                         tfvars={**network, "lake": LAKE})
        # A new account, as docs/operations.md walks it: the state bucket, then the ECR
        # repositories alone (make bootstrap), then the first image push, then the deploy.
        dep.bootstrap_log = state_bucket.ensure_state_bucket(dep.aws("s3"), STATE_BUCKET, emulator.REGION)
        init = dep.tf("init", "-input=false", "-lockfile=readonly", timeout=300)
        assert init.returncode == 0, _explain(init)
        boot = dep.tf("apply", "-input=false", "-auto-approve", "-target=module.platform.module.ecr", timeout=300)
        assert boot.returncode == 0, _explain(boot) + "\n--- moto ---\n" + server.log_tail()
        dep.bootstrapped = int(re.search(r"Apply complete! Resources: (\d+) added", boot.stdout).group(1))
        _push_images(dep)
        plan = dep.tf("plan", "-input=false", "-out=plan.out", timeout=300)
        assert plan.returncode == 0, _explain(plan)
        counts = re.search(r"Plan: (\d+) to add, (\d+) to change, (\d+) to destroy", plan.stdout)
        assert counts and counts.group(3) == "0", _explain(plan)
        dep.planned = int(counts.group(1))
        apply = dep.tf("apply", "-input=false", "-parallelism=16", "plan.out", timeout=600)
        assert apply.returncode == 0 and "Error:" not in apply.stdout + apply.stderr, \
            _explain(apply) + "\n--- moto ---\n" + server.log_tail()
        dep.applied = int(re.search(r"Apply complete! Resources: (\d+) added", apply.stdout).group(1))
        yield dep
    finally:
        server.stop()


# --------------------------------------------------------------------------- apply


def test_bootstrap_makes_the_state_bucket_and_the_registries_first(deployment):
    d = deployment
    s3 = d.aws("s3")
    d.check("bootstrap: state bucket versioned", s3.get_bucket_versioning(Bucket=STATE_BUCKET)["Status"] == "Enabled")
    rule = s3.get_bucket_encryption(Bucket=STATE_BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    d.check("bootstrap: state bucket SSE-KMS", rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms")
    block = s3.get_public_access_block(Bucket=STATE_BUCKET)["PublicAccessBlockConfiguration"]
    d.check("bootstrap: state bucket public access blocked", all(block.values()), block)
    policy = json.loads(s3.get_bucket_policy(Bucket=STATE_BUCKET)["Policy"])
    d.check("bootstrap: state bucket TLS only", policy["Statement"][0]["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}})
    again = state_bucket.ensure_state_bucket(s3, STATE_BUCKET, emulator.REGION)
    d.check("bootstrap: idempotent", "exists" in again[0] and "created" in d.bootstrap_log[0], again)
    d.check("bootstrap: -target=module.platform.module.ecr creates the repositories (+ KMS key)",
            2 <= d.bootstrapped <= 10, d.bootstrapped)


def test_apply_creates_every_planned_resource(deployment):
    d = deployment
    d.check("apply: every planned resource created", d.applied == d.planned and d.applied + d.bootstrapped >= 140,
            f"planned {d.planned}, applied {d.applied} (+{d.bootstrapped} at bootstrap)")
    outputs = json.loads(d.tf("output", "-json").stdout)
    d.check("apply: outputs name every registered workflow's state machine",
            set(outputs["state_machine_arns"]["value"]) == set(_registry()), outputs)


# --------------------------------------------------------------------------- audit


ARN = re.compile(r"arn:aws:(batch|lambda):[a-z0-9-]+:\d{12}:(job-queue|job-definition|function)[:/][A-Za-z0-9_./:-]+")


def _state_machines(d: Deployment) -> dict[str, dict[str, Any]]:
    sfn = d.aws("stepfunctions")
    return {sm["name"]: sfn.describe_state_machine(stateMachineArn=sm["stateMachineArn"])
            for sm in sfn.list_state_machines()["stateMachines"] if sm["name"].startswith(f"{PREFIX}-")}


def _covered(arn: str, resources: list[str] | str) -> bool:
    return any(fnmatch.fnmatchcase(arn, r) for r in ([resources] if isinstance(resources, str) else resources))


def test_state_machines_are_substituted_and_name_only_what_exists(deployment, tmp_path):
    from .test_workflow_lint import validate_asl

    d = deployment
    machines = _state_machines(d)
    d.check("sfn: every registered workflow deployed", set(machines) == {f"{PREFIX}-{wf}" for wf in _registry()},
            sorted(machines))
    batch, lam, iam = d.aws("batch"), d.aws("lambda"), d.aws("iam")
    for name, sm in machines.items():
        text = sm["definition"]
        d.check(f"sfn {name}: every ${{…}} placeholder substituted", "${" not in text,
                re.findall(r"\$\{[^}]*\}", text))
        json.loads(text)
        proc = validate_asl(text, tmp_path / f"{name}.asl.json")
        d.check(f"sfn {name}: asl-validator accepts the deployed definition", proc.returncode == 0,
                proc.stdout + proc.stderr)
        arns = {m.group(0) for m in ARN.finditer(text)}
        queues = sorted(a for a in arns if ":job-queue/" in a)
        job_defs = sorted(a for a in arns if ":job-definition/" in a)
        functions = sorted(a for a in arns if ":function:" in a)
        found_q = {q["jobQueueArn"] for q in batch.describe_job_queues(jobQueues=queues)["jobQueues"]}
        d.check(f"sfn {name}: every queue it names exists", found_q == set(queues), set(queues) - found_q)
        found_jd = {j["jobDefinitionArn"] for j in batch.describe_job_definitions(jobDefinitions=job_defs)[
            "jobDefinitions"] if j["status"] == "ACTIVE"}
        d.check(f"sfn {name}: every job definition it names exists", found_jd == set(job_defs),
                set(job_defs) - found_jd)
        for fn in functions:
            lam.get_function(FunctionName=fn)
        d.check(f"sfn {name}: every Lambda it names exists ({len(functions)})", name.endswith("refresh_databases")
                or len(functions) >= 4, functions)

        role = sm["roleArn"].rsplit("/", 1)[-1]
        policies = [iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
                    for p in iam.list_role_policies(RoleName=role)["PolicyNames"]]
        statements = [s for p in policies for s in (p if isinstance(p, dict) else json.loads(p))["Statement"]]

        def allows(action: str, arn: str) -> bool:
            return any(s["Effect"] == "Allow" and action in ([s["Action"]] if isinstance(s["Action"], str)
                                                              else s["Action"]) and _covered(arn, s["Resource"])
                       for s in statements)

        uncovered = [a for a in queues + job_defs if not allows("batch:SubmitJob", a)]
        uncovered += [a for a in functions if not allows("lambda:InvokeFunction", a)]
        d.check(f"sfn {name}: its role may submit to / invoke everything it names", not uncovered, uncovered)
        d.check(f"sfn {name}: its role may run .sync Batch tasks",
                allows("batch:DescribeJobs", "*") and allows(
                    "events:PutRule", f"arn:aws:events:{emulator.REGION}:{emulator.ACCOUNT}:rule/"
                    "StepFunctionsGetEventsForBatchJobsRule"))


def _jobs_files() -> dict[str, Any]:
    from foldstack.workflows.specs import JobsFile

    return {wf: JobsFile.load(REPO / "statemachines" / wf / "jobs.yaml") for wf in _registry()}


def _registry() -> dict[str, Any]:
    """statemachines/workloads.yaml: what terraform/envs/_shared deploys."""
    return yaml.safe_load((REPO / "statemachines" / "workloads.yaml").read_text())


def test_queues_compute_environments_and_launch_templates_agree(deployment):
    d = deployment
    batch, ec2 = d.aws("batch"), d.aws("ec2")
    spec_queues = {q: s for jf in _jobs_files().values() for q, s in jf.queues.items()}
    queues = {q["jobQueueName"]: q for q in batch.describe_job_queues()["jobQueues"]
              if q["jobQueueName"].startswith(f"{PREFIX}-")}
    d.check("batch: one queue per jobs.yaml queue", set(queues) == {f"{PREFIX}-{q}" for q in spec_queues},
            sorted(queues))
    ces = {c["computeEnvironmentArn"]: c for c in batch.describe_compute_environments()["computeEnvironments"]}
    templates = {t["LaunchTemplateId"]: t for t in ec2.describe_launch_templates()["LaunchTemplates"]}
    sg = {g["GroupName"].rsplit("-", 1)[0]: g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    subnets = sorted(s["subnet_id"] for s in d.tfvars["subnets"].values())
    for q, spec in sorted(spec_queues.items()):
        queue = queues[f"{PREFIX}-{q}"]
        order = queue["computeEnvironmentOrder"]
        d.check(f"batch {q}: queue ENABLED with exactly one compute environment",
                queue["state"] == "ENABLED" and len(order) == 1, queue)
        ce = ces[order[0]["computeEnvironment"]]
        res = ce["computeResources"]
        d.check(f"batch {q}: CE is {spec.purchase} {spec.tier}",
                ce["computeEnvironmentName"].startswith(f"{PREFIX}-{q}-")
                and res["type"] == ("SPOT" if spec.purchase == "spot" else "EC2")
                and res["ec2Configuration"][0]["imageType"] == ("ECS_AL2023_NVIDIA" if spec.tier == "gpu"
                                                                else "ECS_AL2023"), ce)
        d.check(f"batch {q}: CE in our subnets with the compute SG", sorted(res["subnets"]) == subnets
                and res["securityGroupIds"] == [sg[f"{PREFIX}-compute"]], res)
        lt = res["launchTemplate"]
        template = templates.get(lt["launchTemplateId"])
        d.check(f"batch {q}: CE's launch template exists, version pinned to its latest",
                template is not None and template["LaunchTemplateName"].startswith(f"{PREFIX}-{spec.tier}-")
                and str(lt["version"]) == str(template["LatestVersionNumber"]), (lt, template))
    for template in templates.values():
        data = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"])[
            "LaunchTemplateVersions"][0]["LaunchTemplateData"]
        d.check(f"ec2 {template['LaunchTemplateName']}: IMDSv2, hop limit 1",
                data["MetadataOptions"]["HttpTokens"] == "required"
                and data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1, data["MetadataOptions"])


def test_job_definitions_match_jobs_yaml(deployment):
    d = deployment
    batch, iam = d.aws("batch"), d.aws("iam")
    deployed = {j["jobDefinitionName"]: j for j in batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]}
    registry = f"{emulator.ACCOUNT}.dkr.ecr.{emulator.REGION}.amazonaws.com"
    for wf, jobs_file in _jobs_files().items():
        for job_name, job in jobs_file.jobs.items():
            for _, size_class in job.definition_names():
                key = job_name if size_class is None else f"{job_name}_{size_class}"
                name = f"{PREFIX}-{wf}-{key.replace('_', '-')}"
                jd = deployed.get(name)
                d.check(f"jobdef {name}: exists", jd is not None, sorted(deployed))
                c = jd["containerProperties"]
                r = job.resources_for(size_class)
                want_res = {"VCPU": str(r.vcpu), "MEMORY": str(r.memory_mib),
                            **({"GPU": str(r.gpus)} if r.gpus else {})}
                d.check(f"jobdef {name}: resources", {x["type"]: x["value"] for x in c["resourceRequirements"]}
                        == want_res, c["resourceRequirements"])
                d.check(f"jobdef {name}: timeout", jd["timeout"]["attemptDurationSeconds"] == job.timeout_seconds)
                rules = [{k: v for k, v in (("onStatusReason", x.on_status_reason), ("onReason", x.on_reason),
                                            ("onExitCode", x.on_exit_code)) if v is not None} | {"action": x.action}
                         for x in job.retry.evaluate_on_exit]
                got = [{**x, "action": x["action"].upper()} for x in jd["retryStrategy"]["evaluateOnExit"]]
                d.check(f"jobdef {name}: retry rules", jd["retryStrategy"]["attempts"] == job.retry.attempts
                        and got == rules, (jd["retryStrategy"], rules))
                d.check(f"jobdef {name}: command", c["command"] == job.command)
                d.check(f"jobdef {name}: runs as 1000:1000, read-only root, not privileged",
                        c["user"] == "1000:1000" and c["readonlyRootFilesystem"] is True and not c["privileged"])
                d.check(f"jobdef {name}: /fsx/scratch read-write, /fsx/db read-only", sorted(
                    (m["containerPath"], m["readOnly"]) for m in c["mountPoints"]) == [("/fsx/db", True),
                                                                                     ("/fsx/scratch", False)])
                d.check(f"jobdef {name}: image from our registry at the env's tag",
                        c["image"] == f"{registry}/{PREFIX}/{job.image}:bootstrap", c["image"])
                iam.get_role(RoleName=c["jobRoleArn"].rsplit("/", 1)[-1])
                d.check(f"jobdef {name}: its own job role exists",
                        c["jobRoleArn"].endswith(f"{PREFIX}-job-{job_name.replace('_', '-')}"), c["jobRoleArn"])


def test_every_ssm_parameter_the_client_reads_resolves(deployment, monkeypatch):
    from foldstack.client.aws import AwsApi, session_for
    from foldstack.client.config import OPTIONAL, REQUIRED, discover

    d = deployment
    for k, v in d.server.env().items():
        monkeypatch.setenv(k, v)
    config = discover(AwsApi(session_for()), ENV)
    pages = d.aws("ssm").get_paginator("get_parameters_by_path").paginate(Path=f"/foldstack/{ENV}/")
    params = {p["Name"].rsplit("/", 1)[-1] for page in pages for p in page["Parameters"]}
    d.check("ssm: every required parameter published", set(REQUIRED) <= params, set(REQUIRED) - params)
    d.check("ssm: only names the client knows", params <= set(REQUIRED) | set(OPTIONAL), params)
    s3, logs = d.aws("s3"), d.aws("logs")
    d.aws("stepfunctions").describe_state_machine(stateMachineArn=config.state_machine_arn)
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    uris = [config.input_prefix, config.output_prefix, config.msa_cache_uri, config.db_uri,
            *config.allowed_input_prefixes, *config.output_prefixes]
    missing = [u for u in uris if u.split("/")[2] not in buckets]
    d.check("ssm: every s3:// prefix is in a bucket that exists", not missing and config.scratch_bucket in buckets,
            missing)
    d.check("ssm: region", config.region == emulator.REGION)
    groups = {g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix="/aws/batch/")["logGroups"]}
    d.check("ssm: the Batch log group exists", config.log_group_batch in groups, groups)
    found = {q["jobQueueArn"] for q in d.aws("batch").describe_job_queues(
        jobQueues=list(config.queues.values()))["jobQueues"]}
    d.check("ssm: every queue ARN exists", found == set(config.queues.values()))
    d.check("ssm: size classes from jobs.yaml", set(config.size_classes) == set(_jobs_files()["fold"].size_classes))
    clients = {wf for wf, w in _registry().items() if w["submitted_by"] == "client"}
    d.check("ssm: workflows maps every client workflow to its deployed state machine",
            set(config.workflows) == clients and config.workflows.get("fold") == config.state_machine_arn
            and all(arn.endswith(f":stateMachine:{PREFIX}-{wf}") for wf, arn in config.workflows.items()),
            config.workflows)


def test_compute_reaches_s3_and_fsx(deployment):
    d = deployment
    ec2 = d.aws("ec2")
    s3_list = ec2.describe_managed_prefix_lists(Filters=[{"Name": "prefix-list-name",
                                                          "Values": [f"com.amazonaws.{emulator.REGION}.s3"]}])
    s3_pl = s3_list["PrefixLists"][0]["PrefixListId"]
    groups = {g["GroupName"].rsplit("-", 1)[0]: g for g in ec2.describe_security_groups()["SecurityGroups"]}
    compute = groups[f"{PREFIX}-compute"]["GroupId"]
    rules = [r for r in ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [compute]}])[
        "SecurityGroupRules"] if r.get("IsEgress")]
    d.check("network: compute has HTTPS egress to the S3 prefix list",
            any(r.get("PrefixListId") == s3_pl and r["FromPort"] == 443 for r in rules), rules)
    fsx = {fs["FileSystemId"]: fs for fs in d.aws("fsx").describe_file_systems()["FileSystems"]}
    d.check("fsx: a database and a scratch file system per AZ", len(fsx) == 2 * len(d.tfvars["subnets"]), fsx)


# --------------------------------------------------------------------------- client


def _push_images(d: Deployment) -> None:
    """Stand-in images at the tag the job definitions run (the first push after bootstrap)."""
    ecr = d.aws("ecr")
    for image in _load_script("image_matrix").images(REPO):
        with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):  # immutable: pushed already
            ecr.put_image(repositoryName=f"{PREFIX}/{image}", imageTag="bootstrap",
                          imageManifest=json.dumps(STAND_IN_MANIFEST))


def _use_env(d: Deployment) -> None:
    """What a used env holds: the step images at the tag the job definitions run, one
    database version and ESMFold weights."""
    s3 = d.aws("s3")
    _push_images(d)
    db = f"{PREFIX}-database-{emulator.ACCOUNT}-{emulator.REGION}"
    fasta = b">s1\nMKTAYIAKQR\n"
    manifest = {"schema_version": 1, "name": "demo", "version": "v1", "role": "uniref90", "sequences": "demo.fasta",
                "files": {"demo.fasta": {"bytes": len(fasta)}}}
    s3.put_object(Bucket=db, Key="db/demo/v1/demo.fasta", Body=fasta)
    s3.put_object(Bucket=db, Key="db/demo/v1/manifest.json", Body=json.dumps(manifest).encode())
    s3.put_object(Bucket=db, Key="db/demo/CURRENT", Body=b"v1\n")
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        s3.put_object(Bucket=db, Key=f"db/weights/esmfold/{name}", Body=b"{}")


def test_the_client_against_the_deployed_env(deployment, monkeypatch, tmp_path):
    from foldstack.client import Client
    from foldstack.core.errors import AccessDeniedError

    d = deployment
    for k, v in d.server.env().items():
        monkeypatch.setenv(k, v)
    _use_env(d)
    client = Client(ENV)

    checks = {c.name: c for c in client.doctor()}
    for name in ("batch-queues", "subnet-ips", "ecr-images", "databases", "fsx-import"):
        d.check(f"doctor: {name} passes", checks[name].status == "pass", checks[name])
    d.check("doctor: weights found (alphafold2 missing is a warning)", checks["weights"].status == "warn"
            and "installed: esmfold" in checks["weights"].detail, checks["weights"])
    # one uniref90 database made by hand: the default preset lacks its other roles, and it is
    # not a catalogue version
    d.check("doctor: db-presets names what reduced_dbs lacks", checks["db-presets"].status == "fail"
            and "reduced_dbs: missing small_bfd, mgnify" in checks["db-presets"].detail, checks["db-presets"])
    d.check("doctor: db-catalogue warns of a version not from the catalogue", checks["db-catalogue"].status == "warn"
            and "demo@v1 is not a catalogue version" in checks["db-catalogue"].detail, checks["db-catalogue"])

    s3, sfn = d.aws("s3"), d.aws("stepfunctions")
    s3.put_object(Bucket=LAKE, Key="sequences/emu.fasta", Body=FASTA)
    lake_run = client.submit(f"s3://{LAKE}/sequences/emu.fasta", engine="esmfold")
    d.check("client: submit from the data lake starts a new run", lake_run.existed is False, lake_run.run_id)
    local = tmp_path / "local.fasta"
    local.write_bytes(FASTA.replace(b"emu1", b"emu2"))
    local_run = client.submit(str(local), engine="esmfold")
    d.check("client: submit from a local file starts a new run", local_run.existed is False, local_run.run_id)
    uploads = [o["Key"] for o in s3.list_objects_v2(Bucket=client.config.scratch_bucket, Prefix="uploads/")
               .get("Contents", [])]
    d.check("client: the local file was uploaded under input_prefix", any(k.endswith("/local.fasta")
                                                                          for k in uploads), uploads)
    listed = {r.run_id for r in client.runs()}
    d.check("client: list shows both runs", {lake_run.run_id, local_run.run_id} <= listed, listed)

    # Identical resubmit while the execution is RUNNING: Step Functions answers the
    # StartExecution with success (not ExecutionAlreadyExists)...
    arn = client.config.execution_arn(lake_run.run_id)
    execution = sfn.describe_execution(executionArn=arn)
    d.check("client: the first run is RUNNING", execution["status"] == "RUNNING", execution["status"])
    raw = sfn.start_execution(stateMachineArn=client.config.state_machine_arn, name=lake_run.run_id,
                              input=execution["input"])
    d.check("sfn: identical StartExecution while RUNNING succeeds", raw["executionArn"] == arn, raw)
    # ...and the client still reports the run as the existing one.
    again = client.submit(f"s3://{LAKE}/sequences/emu.fasta", engine="esmfold")
    d.check("client: identical resubmit while RUNNING returns the same run with existed true",
            again.run_id == lake_run.run_id and again.existed is True, (again.run_id, again.existed))
    count = sum(1 for e in sfn.list_executions(stateMachineArn=client.config.state_machine_arn)["executions"])
    d.check("client: the resubmit started no second execution", count == 2, count)

    with pytest.raises(AccessDeniedError) as refused:
        client.submit(str(local), engine="esmfold", output=f"s3://{LAKE}/elsewhere/")
    d.check("client: an output outside the allowed prefixes is refused", "outside the allowed prefixes"
            in str(refused.value), refused.value)


# --------------------------------------------------------------------------- destroy


def test_destroy_of_a_used_env_leaves_nothing(deployment, capsys):
    d = deployment
    _use_env(d)  # idempotent; the destroy must not depend on the client test having run
    # The one thing not destroyed by Terraform here: after DeleteFileSystem the provider's
    # waiter makes no further request for 10 minutes under moto (no estate issue: the
    # DELETE itself succeeds at once). The file systems leave the state first and are
    # deleted through the FSx API below; everything else, their data repository
    # associations included, goes through `terraform destroy`.
    state = json.loads(d.tf("show", "-json").stdout)
    file_systems = {r["address"]: r["values"]["id"] for r in _managed(state["values"]["root_module"])
                    if r["type"] == "aws_fsx_lustre_file_system"}
    d.check("destroy: one FSx pair per AZ in the state", len(file_systems) == 2 * len(d.tfvars["subnets"]),
            file_systems)
    removed = d.tf("state", "rm", *file_systems)
    assert removed.returncode == 0, _explain(removed)
    destroy = d.tf("destroy", "-auto-approve", "-input=false", "-parallelism=16", timeout=600)
    output = destroy.stdout + destroy.stderr
    d.check("destroy: 0 errors", destroy.returncode == 0 and "Error:" not in output,
            _explain(destroy) + "\n--- moto ---\n" + d.server.log_tail())
    fsx = d.aws("fsx")
    for fs_id in file_systems.values():
        fsx.delete_file_system(FileSystemId=fs_id, LustreConfiguration={"SkipFinalBackup": True})
    d.check("destroy: no FSx file system left", not fsx.describe_file_systems()["FileSystems"])
    d.destroyed = int(re.search(r"Destroy complete! Resources: (\d+) destroyed", destroy.stdout).group(1))
    d.check("destroy: every applied resource destroyed",
            d.destroyed + len(file_systems) == d.applied + d.bootstrapped,
            (d.applied, d.bootstrapped, d.destroyed, len(file_systems)))
    state = d.tf("state", "list")
    d.check("destroy: the state is empty", state.returncode == 0 and not state.stdout.strip(), state.stdout)
    repos = [r["repositoryName"] for r in d.aws("ecr").describe_repositories()["repositories"]]
    d.check("destroy: the registries went with their images", not [r for r in repos if r.startswith(PREFIX)], repos)
    buckets = [b["Name"] for b in d.aws("s3").list_buckets()["Buckets"]]
    d.check("destroy: the buckets went with their objects", not [b for b in buckets if b.startswith(PREFIX)],
            buckets)
    elapsed = time.monotonic() - d.started
    with capsys.disabled():
        print(f"\nemulator deploy ({ENV}): {d.bootstrapped} + {d.applied} resources applied (bootstrap + deploy), "
              f"{d.destroyed} destroyed by terraform "
              f"(+{len(file_systems)} FSx file systems through the FSx API), {len(d.checks)} checks passed, "
              f"{elapsed:.0f} s", flush=True)


def _managed(module: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in module.get("resources", []) if r["mode"] == "managed"] + [
        r for child in module.get("child_modules", []) for r in _managed(child)]
