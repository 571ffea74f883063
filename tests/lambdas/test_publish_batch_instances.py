"""Publish Batch prices each job by the instance type it ran on: in the
cloud the step cannot read it (launch template hop limit 1), so Publish Batch asks Batch
DescribeJobs (container instance of the attempt) and ECS DescribeContainerInstances
(``ecs.instance-type``) in batched calls; anything missing falls back to the cheapest fitting
type, flagged. AWS is botocore's Stubber here (moto's DescribeJobs carries no container
instance), which also checks every request's parameters and that no call is left over."""

from __future__ import annotations

import hashlib
import json
import logging
import math

import pytest
from tests.conftest import load_handler

from foldstack import storage
from foldstack.core.fasta import parse_fasta
from foldstack.core.request import RunRequest
from foldstack.core.runid import make_run_id
from foldstack.tasks import instances

REGION, ACCOUNT = "us-east-1", "111111111111"
SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
QUEUE = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/foldstack-prod-gpu-small"
CLUSTER = "foldstack-prod-gpu-small-20261130_Batch_0f9a"


def cluster_arn(name=CLUSTER):
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}"


def instance_arn(n, cluster=CLUSTER):
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{cluster}/{n:032x}"


def job_detail(job_id, arns, queue=QUEUE, times=None):
    """DescribeJobs' view of a finished job: one attempt per container instance ARN
    (`times`: each attempt's (startedAt, stoppedAt) in epoch milliseconds)."""
    attempts = [{"container": {"containerInstanceArn": a}} for a in arns]
    for attempt, (started, stopped) in zip(attempts, times or [], strict=False):
        attempt.update(startedAt=started, stoppedAt=stopped)
    return {"jobName": job_id, "jobId": job_id, "jobQueue": queue, "status": "SUCCEEDED", "startedAt": 1,
            "jobDefinition": f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/foldstack-prod-fold-predict-small:1",
            "attempts": attempts, "container": {"containerInstanceArn": arns[-1]}}


def container_instance(arn, instance_type):
    return {"containerInstanceArn": arn, "attributes": [{"name": "ecs.os-type", "value": "linux"},
                                                        {"name": "ecs.instance-type", "value": instance_type}]}


@pytest.fixture
def aws(monkeypatch):
    """Stubbed Batch and ECS clients behind the module's one funnel; lookups switched on as
    on the cloud Lambdas. Yields {"batch": Stubber, "ecs": Stubber}."""
    import boto3
    from botocore.stub import Stubber

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name=REGION)
    clients = {s: session.client(s) for s in ("batch", "ecs")}
    stubs = {s: Stubber(c) for s, c in clients.items()}
    for stub in stubs.values():
        stub.activate()
    monkeypatch.setattr(instances, "_client", clients.__getitem__)
    monkeypatch.setenv(instances.LOOKUP_ENV, "batch")
    monkeypatch.setenv("FOLDSTACK_PRICE_REGION", REGION)
    yield stubs
    for stub in stubs.values():
        stub.deactivate()


@pytest.fixture
def task_log(caplog, monkeypatch):
    """The task logger's records, each once: the runtime stops them propagating to the root
    logger once it has configured logging, which a test run alone has not done yet."""
    logger = logging.getLogger("foldstack.task")
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    with caplog.at_level(logging.INFO, logger="foldstack.task"):
        yield caplog
    logger.removeHandler(caplog.handler)


def _lookups(caplog):
    return [json.loads(r.getMessage())["instance_lookup"] for r in caplog.records
            if "instance_lookup" in r.getMessage()]


_handler = load_handler


def _run(local_env, n_targets=1):
    """A validated ESMFold run of `n_targets` small targets and its Publish Batch event."""
    data = "".join(f">t{i}\n{SEQ[i % 7:]}{SEQ[:i % 7]}\n" for i in range(n_targets))
    fasta = local_env["inputs"] / "x.fasta"
    fasta.write_text(data)
    request = {"inputs": [str(fasta)], "output_uri": str(local_env["outputs"]), "engine": "esmfold"}
    event = {"run_id": make_run_id(RunRequest.model_validate(request), parse_fasta(data)), "request": request}
    targets = _handler("validate_input")(event)["targets"]
    batch = {"batch": "b00000", "size_class": targets[0]["size_class"],
             "target_ids": ",".join(t["id"] for t in targets),
             "targets": [{k: t[k] for k in ("id", "sha256", "length", "chains")} for t in targets]}
    return event, targets, {**event, "batch": batch, "msa": [], "predict": {"failed": False}}


def _predict_done(local_env, run_id, target, *, job_id, attempt):
    """What the predict step leaves in the cloud: outputs, timings and ran_on without an
    instance type (the container cannot reach the instance metadata)."""
    base = local_env["scratch"] / run_id / "predict" / target
    files = {"ranked_0.pdb": b"ATOM\n", "metrics.json": b'{"mean_plddt": 50}'}
    for rel, blob in files.items():
        storage.write_bytes(str(base / rel), blob)
    done = {"step": "predict", "outputs": {rel: hashlib.sha256(b).hexdigest() for rel, b in files.items()},
            "timings": {"total": 3600},
            "ran_on": {"queue": "foldstack-prod-gpu-small", "compute_environment": "foldstack-prod-gpu-small-x",
                       "size_class": "small", "attempt": attempt, "job_id": job_id}}
    storage.write_bytes(str(base / "predict.done.json"), json.dumps(done).encode())


def _published(local_env, run_id, target):
    return json.loads((local_env["outputs"] / run_id / target / "target.json").read_text())


def test_the_instance_type_the_job_ran_on_is_recorded_and_priced(local_env, aws):
    """Attempt 2 of the predict job wrote the done record on a g5.xlarge (attempt 1 was
    reclaimed; attempt 3, on another instance, found the work done and exited): the published
    provenance says g5.xlarge on demand (the gpu-small queue's purchase option) and the cost
    prices it, not the cheapest fitting type (g6.xlarge)."""
    event, targets, publish_event = _run(local_env)
    _predict_done(local_env, event["run_id"], "t0", job_id="job-p", attempt=2)
    first, second, third = instance_arn(1), instance_arn(2), instance_arn(3)
    aws["batch"].add_response("describe_jobs", {"jobs": [job_detail("job-p", [first, second, third])]},
                              {"jobs": ["job-p"]})
    aws["ecs"].add_response("describe_container_instances", {"containerInstances": [
        container_instance(second, "g5.xlarge")]}, {"cluster": cluster_arn(), "containerInstances": [second]})

    assert _handler("publish_batch")(publish_event)["published"] == 1
    for stub in aws.values():
        stub.assert_no_pending_responses()
    target = _published(local_env, event["run_id"], "t0")
    ran_on = target["provenance"]["predict"]["ran_on"]
    assert ran_on["instance_type"] == "g5.xlarge" and ran_on["purchase"] == "on_demand"
    step = target["cost"]["steps"]["predict"]
    assert step["instance_type"] == "g5.xlarge" and step["instance_source"] == "ran_on"
    from foldstack.cost import load_price_table

    table = load_price_table(region=REGION)
    assert step["usd"] == pytest.approx(table.instances["g5.xlarge"].on_demand * step["instance_share"], rel=1e-4)
    assert step["usd"] != pytest.approx(table.instances["g6.xlarge"].on_demand * step["instance_share"], rel=1e-4)
    # Collect Outputs prices the run from the same provenance: no job left to the cheapest fit
    collected = _handler("collect_outputs")({**event, "targets": targets})
    manifest = json.loads((local_env["outputs"] / event["run_id"] / "manifest.json").read_text())
    assert collected["targets"] == 1 and "priced_by_cheapest_fit" not in manifest["cost"]


def test_attempts_lost_before_the_finished_one_are_priced_as_overhead(local_env, aws):
    """Attempt 1 ran 30 min on a g6.xlarge and was reclaimed; attempt 2 finished on a
    g5.xlarge (1 h). Both instances are asked in the one ECS call; the job's cost is the
    hour on the g5 plus the lost half hour on the g6, that half hour counted as overhead."""
    event, _, publish_event = _run(local_env)
    _predict_done(local_env, event["run_id"], "t0", job_id="job-p", attempt=2)
    first, second = instance_arn(1), instance_arn(2)
    t0 = 1_764_547_200_000
    aws["batch"].add_response("describe_jobs", {"jobs": [job_detail(
        "job-p", [first, second], times=[(t0, t0 + 1_800_000), (t0 + 1_900_000, t0 + 5_500_000)])]},
        {"jobs": ["job-p"]})
    aws["ecs"].add_response("describe_container_instances", {"containerInstances": [
        container_instance(first, "g6.xlarge"), container_instance(second, "g5.xlarge")]},
        {"cluster": cluster_arn(), "containerInstances": sorted([first, second])})

    assert _handler("publish_batch")(publish_event)["published"] == 1
    for stub in aws.values():
        stub.assert_no_pending_responses()
    target = _published(local_env, event["run_id"], "t0")
    ran_on = target["provenance"]["predict"]["ran_on"]
    assert ran_on["earlier_attempts"] == [{"attempt": 1, "seconds": 1800.0, "instance_type": "g6.xlarge"}]
    from foldstack.cost import load_price_table

    table = load_price_table(region=REGION)
    step = target["cost"]["steps"]["predict"]
    share = step["instance_share"]
    lost = table.instances["g6.xlarge"].on_demand * share / 2
    assert step["earlier_attempts"] == {"attempts": 1, "seconds": 1800.0, "usd": pytest.approx(lost, rel=1e-4)}
    assert step["usd"] == pytest.approx(table.instances["g5.xlarge"].on_demand * share + lost, rel=1e-4)
    assert step["overhead_usd"] >= lost * (1 - 1e-4)


@pytest.mark.parametrize("trouble", ["instance_gone", "access_denied"])
def test_a_missing_instance_or_denied_call_falls_back_to_the_cheapest_fit_and_publishes(local_env, aws, task_log,
                                                                                         trouble):
    event, _, publish_event = _run(local_env)
    _predict_done(local_env, event["run_id"], "t0", job_id="job-p", attempt=1)
    arn = instance_arn(7)
    if trouble == "access_denied":
        aws["batch"].add_client_error("describe_jobs", "AccessDeniedException", "not authorized", 403)
    else:  # the instance was scaled in and ECS no longer keeps it
        aws["batch"].add_response("describe_jobs", {"jobs": [job_detail("job-p", [arn])]}, {"jobs": ["job-p"]})
        aws["ecs"].add_response("describe_container_instances", {"containerInstances": [], "failures": [
            {"arn": arn, "reason": "MISSING"}]}, {"cluster": cluster_arn(), "containerInstances": [arn]})

    assert _handler("publish_batch")(publish_event)["published"] == 1
    for stub in aws.values():
        stub.assert_no_pending_responses()
    target = _published(local_env, event["run_id"], "t0")
    assert "instance_type" not in target["provenance"]["predict"]["ran_on"]
    step = target["cost"]["steps"]["predict"]
    assert step["instance_source"] == "cheapest_fit" and step["instance_type"] == "g6.xlarge" and step["usd"] > 0
    logged = _lookups(task_log)
    assert len(logged) == 1 and logged[0]["filled"] == 0
    assert ("MISSING" if trouble == "instance_gone" else "AccessDeniedException") in logged[0]["unresolved"][0]


def test_no_lookup_without_the_switch(local_env, monkeypatch):
    """Locally (no FOLDSTACK_INSTANCE_LOOKUP) nothing asks AWS: the local engine's job ids are its own."""
    calls = []
    monkeypatch.setattr(instances, "_call", lambda *a, **k: calls.append(a) or {})
    monkeypatch.delenv(instances.LOOKUP_ENV, raising=False)
    event, _, publish_event = _run(local_env)
    _predict_done(local_env, event["run_id"], "t0", job_id="job-p", attempt=1)
    assert _handler("publish_batch")(publish_event)["published"] == 1
    assert calls == []
    assert _published(local_env, event["run_id"], "t0")["cost"]["steps"]["predict"]["instance_source"] == "cheapest_fit"


@pytest.mark.slow
def test_a_250_job_batch_takes_a_bounded_number_of_batched_calls(local_env, aws, task_log):
    """250 targets, each predicted by its own job (as after escalations), on 250 container
    instances in two clusters: 3 DescribeJobs (100 + 100 + 50 ids) and 3
    DescribeContainerInstances (150 in one cluster: 100 + 50; 100 in the other) — never one
    call per job. The Stubber fails any call beyond these six or with other parameters."""
    n = 250
    event, _, publish_event = _run(local_env, n)
    other = "foldstack-prod-gpu-small-20261201_Batch_77aa"  # the CE replaced mid-run: a second cluster
    arns = {f"job-{i:03d}": instance_arn(i, CLUSTER if i < 150 else other) for i in range(n)}
    for i, job_id in enumerate(arns):
        _predict_done(local_env, event["run_id"], f"t{i}", job_id=job_id, attempt=1)
    ids = sorted(arns)
    for start in range(0, n, 100):
        page = ids[start:start + 100]
        aws["batch"].add_response("describe_jobs", {"jobs": [job_detail(j, [arns[j]]) for j in page]}, {"jobs": page})
    for cluster in sorted((CLUSTER, other), key=cluster_arn):
        members = sorted(a for a in arns.values() if f"/{cluster}/" in a)
        for start in range(0, len(members), 100):
            page = members[start:start + 100]
            aws["ecs"].add_response("describe_container_instances", {"containerInstances": [
                container_instance(a, "g5.xlarge") for a in page]}, {"cluster": cluster_arn(cluster),
                                                                    "containerInstances": page})

    assert _handler("publish_batch")(publish_event)["published"] == n
    for stub in aws.values():
        stub.assert_no_pending_responses()
    (logged,) = _lookups(task_log)
    assert logged == {"records": n, "filled": n, "aws_calls": 6}
    assert logged["aws_calls"] <= math.ceil(n / 100) + 2 + math.ceil(n / 100)  # jobs + clusters + instances
    assert {_published(local_env, event["run_id"], f"t{i}")["provenance"]["predict"]["ran_on"]["instance_type"]
            for i in (0, 149, 150, 249)} == {"g5.xlarge"}


def test_jobs_sharing_a_batched_predict_job_are_asked_once(aws):
    """Targets of one batched predict job share its job id: one id in DescribeJobs, one
    container instance; a step that read its own type keeps it and is not asked."""
    arn = instance_arn(3)
    records = [{"job_id": "job-b", "attempt": 1, "queue": "foldstack-prod-cpu-spot"} for _ in range(5)]
    records.append({"job_id": "job-own", "attempt": 1, "instance_type": "r6i.2xlarge", "purchase": "spot"})
    aws["batch"].add_response("describe_jobs", {"jobs": [job_detail(
        "job-b", [arn], queue=f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/foldstack-prod-cpu-spot")]},
        {"jobs": ["job-b"]})
    aws["ecs"].add_response("describe_container_instances", {"containerInstances": [
        container_instance(arn, "m6i.2xlarge")]}, {"cluster": cluster_arn(), "containerInstances": [arn]})
    from foldstack.workflows.specs import load_workflow

    assert instances.record_instance_types(records, jobs=load_workflow("fold").jobs) == 5
    for stub in aws.values():
        stub.assert_no_pending_responses()
    assert all(r["instance_type"] == "m6i.2xlarge" and r["purchase"] == "spot" for r in records[:5])
    assert records[5]["instance_type"] == "r6i.2xlarge"


def test_a_short_container_instance_arn_is_left_unresolved(aws):
    """The old ARN format names no cluster: that job keeps the cheapest-fit fallback."""
    short = f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{'a' * 32}"
    aws["batch"].add_response("describe_jobs", {"jobs": [job_detail("job-s", [short])]}, {"jobs": ["job-s"]})
    record = {"job_id": "job-s", "attempt": 1}
    assert instances.record_instance_types([record]) == 0
    assert "instance_type" not in record


def test_the_lookup_stops_when_its_time_budget_is_spent(aws, task_log, monkeypatch):
    """AWS slow or unreachable: no call starts after the invocation's budget, the records
    keep the cheapest-fit fallback and the log says why."""
    monkeypatch.setattr(instances, "BUDGET_S", -1.0)
    record = {"job_id": "job-late", "attempt": 1}
    assert instances.record_instance_types([record]) == 0
    assert "instance_type" not in record
    (logged,) = _lookups(task_log)
    assert logged["aws_calls"] == 0 and "OutOfTime: lookup budget" in logged["unresolved"][0]
