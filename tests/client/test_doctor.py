"""`doctor` against moto (SSM, S3, EC2, ECR, Step Functions) and Stubber (Batch, Service Quotas)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from foldstack.client.doctor import Doctor
from tests.client.conftest import ACCOUNT, REGION

REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"


@pytest.fixture
def infra(deployed_plain):
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/26")["Subnet"]["SubnetId"]
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="foldstack-msa")
    ecr.put_image(repositoryName="foldstack-msa", imageTag="v1", imageManifest=json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "config": {"digest": "sha256:" + "a" * 64, "size": 1,
                    "mediaType": "application/vnd.docker.container.image.v1+json"},
         "layers": []}))
    return deployed_plain, subnet


def _stub(doctor, subnet):
    q = doctor.config.queues["cpu-spot"]
    ces = [
        {"computeEnvironmentName": "cpu-spot", "computeEnvironmentArn": "arn:ce/cpu-spot", "state": "ENABLED",
         "status": "VALID", "computeResources": {"type": "SPOT", "maxvCpus": 256, "minvCpus": 0,
                                                 "instanceTypes": ["c6i.2xlarge"], "subnets": [subnet]}},
        {"computeEnvironmentName": "gpu-small", "computeEnvironmentArn": "arn:ce/gpu-small", "state": "ENABLED",
         "status": "VALID", "computeResources": {"type": "EC2", "maxvCpus": 512, "minvCpus": 0,
                                                 "instanceTypes": ["g5.xlarge"], "subnets": [subnet]}},
    ]
    queues = [{"jobQueueName": "cpu-spot", "jobQueueArn": q, "state": "ENABLED", "status": "VALID", "priority": 1,
               "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "arn:ce/cpu-spot"},
                                           {"order": 2, "computeEnvironment": "arn:ce/gpu-small"}]}]
    definition = json.loads(boto3.client("stepfunctions", region_name=REGION).describe_state_machine(
        stateMachineArn=doctor.config.state_machine_arn)["definition"])
    from foldstack.client.doctor import _find_values

    job_defs = sorted(set(_find_values(definition, "JobDefinition")))
    defs = [{"jobDefinitionName": d.rsplit("/", 1)[-1].split(":")[0], "jobDefinitionArn": d, "revision": 1,
             "type": "container", "containerProperties": {
                 "image": f"{REGISTRY}/foldstack-{'msa' if 'msa' in d else 'predict'}:v1"}} for d in job_defs]

    batch = Stubber(doctor.api.client("batch"))
    batch.add_response("describe_job_queues", {"jobQueues": queues})
    batch.add_response("describe_compute_environments", {"computeEnvironments": ces})
    batch.add_response("describe_compute_environments", {"computeEnvironments": ces})
    batch.add_response("describe_job_queues", {"jobQueues": queues})
    batch.add_response("describe_job_definitions", {"jobDefinitions": defs})
    sq = Stubber(doctor.api.client("service-quotas"))
    for value in (64.0, 512.0):  # sorted keys: ("g", "on_demand"), ("standard", "spot")
        sq.add_response("get_service_quota", {"Quota": {"Value": value, "QuotaName": "x"}})
    sq.add_response("list_service_quotas", {"Quotas": [
        {"QuotaName": "Compute environment limit", "Value": 50.0},
        {"QuotaName": "Job queue limit", "Value": 50.0}]})
    sq.add_response("list_service_quotas", {"Quotas": [{"QuotaName": "Open executions", "Value": 1000000.0}]})
    return batch, sq


@pytest.mark.slow
def test_doctor_reports_passing_and_failing_checks(infra):
    deployment, subnet = infra
    client = deployment.client()
    doctor = Doctor(client.api, client.config)
    batch, sq = _stub(doctor, subnet)
    with batch, sq:
        checks = {c.name: c for c in doctor.run()}
    batch.assert_no_pending_responses()
    sq.assert_no_pending_responses()
    assert checks["batch-queues"].status == "pass"
    gpu = checks["ec2-vcpu-quota g/on_demand"]
    assert gpu.status == "fail" and "quota 64 vCPUs" in gpu.detail and "512" in gpu.detail
    assert "--quota-code L-DB2E81BA --desired-value 512" in gpu.fix
    assert checks["ec2-vcpu-quota standard/spot"].status == "pass"
    ips = checks["subnet-ips"]  # /26: 59 free; 256/8 + 512/4 = 160 instances
    assert ips.status == "fail" and "59 free" in ips.detail and "160 instances" in ips.detail
    assert checks["batch-quota compute environments"].status == "pass"
    assert checks["sfn-quota"].status == "pass"
    images = checks["ecr-images"]
    assert images.status == "fail" and "foldstack-predict:v1: RepositoryNotFoundException" in images.detail
    assert "foldstack-msa" not in images.detail
    assert checks["databases"].status == "fail" and "refresh_databases" in checks["databases"].fix
    assert checks["weights"].status == "fail" and "foldstack weights fetch" in checks["weights"].fix


@pytest.mark.slow
def test_database_check_passes_once_populated_and_failures_to_read_are_reported(infra):
    deployment, _ = infra
    client = deployment.client()
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket="fs-db", Key="db/uniref90/2024_01/x", Body=b"x")  # a version no CURRENT names
    doctor = Doctor(client.api, client.config)
    assert doctor.databases()[0].status == "fail" and "no database" in doctor.databases()[0].detail
    s3.put_object(Bucket="fs-db", Key="db/uniref90/CURRENT", Body=b"2024_01\n")
    assert "has no manifest.json" in doctor.databases()[0].detail
    s3.put_object(Bucket="fs-db", Key="db/uniref90/2024_01/manifest.json", Body=json.dumps(
        {"name": "uniref90", "version": "2024_01", "files": {"x": {"bytes": 1}, "y.fasta": {"bytes": 3}}}))
    assert doctor.databases()[0].status == "fail" and "y.fasta" in doctor.databases()[0].detail
    s3.put_object(Bucket="fs-db", Key="db/uniref90/2024_01/y.fasta", Body=b">a\n")
    assert doctor.databases()[0].status == "pass" and "uniref90@2024_01 (2 files)" in doctor.databases()[0].detail
    s3.put_object(Bucket="fs-db", Key="db/weights/esmfold/config.json", Body=b"{}")
    s3.put_object(Bucket="fs-db", Key="db/weights/esmfold/model.safetensors", Body=b"x")
    assert doctor.weights()[0].status == "warn" and "missing: alphafold2" in doctor.weights()[0].detail
    sq = Stubber(client.api.client("service-quotas"))
    sq.add_client_error("list_service_quotas", "AccessDeniedException", "not authorized to ListServiceQuotas")
    with sq:
        [check] = doctor.guarded("sfn-quota", doctor.sfn_quota)
    assert check.status == "fail" and "not authorized" in check.detail and "ListServiceQuotas" in check.fix \
        or "list_service_quotas" in check.fix
