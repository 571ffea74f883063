"""`foldstack doctor`: will this environment hold a big campaign? Checks the real limits at
scale before anything is submitted, and says how to fix each problem.

  batch-queues      every configured job queue and its compute environments ENABLED/VALID
  ec2-vcpu-quota    per instance family (G/VT, P, Standard) and purchase option (on-demand,
                    Spot): the EC2 vCPU quota against the sum of the CEs' max vCPUs
  subnet-ips        free IP addresses in the CEs' subnets against the most instances the
                    CEs can launch (max vCPUs / smallest instance's vCPUs)
  batch-quotas      Batch compute environment and job queue counts against their quotas
  sfn-quota         running executions against Step Functions' open-executions quota
  ecr-images        every job definition's image exists in ECR
  databases         every database under `db_uri` (`<db_uri>/<name>/CURRENT`): the version it
                    names has a readable manifest.json and every file the manifest lists, at
                    the size it records (what the msa step and the MSA cache key will use)
  db-presets        which database presets (reduced_dbs, full_dbs, colabfold) the installed
                    roles serve and what each lacks; db-catalogue: whether each installed
                    version is a catalogue version (foldstack.client.doctor_catalogue)
  weights           `<db_uri>/weights/<engine>/` holds each engine's weights in the layout
                    of foldstack.steps.weights_layout (demo weights are a warning)
  fsx-import        the database FSx file systems of this environment are AVAILABLE and
                    their data repository associations import `db_uri` automatically
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from foldstack.client import doctor_hints as hints
from foldstack.client.aws import AwsApi
from foldstack.client.config import ClientConfig
from foldstack.client.doctor_catalogue import InstalledDatabase, catalogue_check, preset_check
from foldstack.client.doctor_check import FAIL, PASS, WARN, Check
from foldstack.client.errors import AwsError
from foldstack.core.uris import parse_uri
from foldstack.steps.weights_layout import AF2_OVERRIDES, DEMO_MARKER, ENGINES

# EC2 vCPU quotas (Service Quotas, service code "ec2") by family group and purchase option.
EC2_QUOTAS = {
    ("standard", "on_demand"): ("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
    ("g", "on_demand"): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("p", "on_demand"): ("L-417A185B", "Running On-Demand P instances"),
    ("standard", "spot"): ("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
    ("g", "spot"): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("p", "spot"): ("L-7212CCBC", "All P Spot Instance Requests"),
}
_ECR = re.compile(r"^(?P<registry>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
                  r"(?P<repo>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")
DEFAULT_MIN_VCPUS = 2  # when the smallest instance of a CE cannot be determined
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # database names and versions (cachekeys)
MAX_MANIFEST_BYTES = 1 << 20


def family_group(instance_type: str) -> str:
    first = instance_type.strip().lower()[:1]
    return first if first in ("g", "p") else ("g" if instance_type.lower().startswith("vt") else "standard")


def _ratio(have: float, need: float) -> str:
    return PASS if have >= need else (WARN if have >= need / 2 else FAIL)


class Doctor:
    def __init__(self, api: AwsApi, config: ClientConfig) -> None:
        self.api, self.config = api, config
        self.queues: list[dict[str, Any]] = []
        self.ces: list[dict[str, Any]] = []
        # Complete versions the `databases` check read (None: it could not read them).
        self.installed: list[InstalledDatabase] | None = None

    def guarded(self, name: str, fn: Callable[[], list[Check]]) -> list[Check]:
        try:
            return fn()
        except AwsError as exc:
            return [Check(name, WARN if exc.code != "aws_access_denied" else FAIL,
                          f"could not check: {exc}", hints.access_hint(exc.operation))]

    # -- Batch
    def batch_queues(self) -> list[Check]:
        arns = list(self.config.queues.values())
        self.queues = self.api.call("batch", "describe_job_queues", jobQueues=arns).get("jobQueues", [])
        found = {q["jobQueueArn"] for q in self.queues} | {q["jobQueueName"] for q in self.queues}
        problems = [f"queue {a} not found" for a in arns if a not in found and a.rsplit("/", 1)[-1] not in found]
        ce_arns = sorted({o["computeEnvironment"] for q in self.queues for o in q.get("computeEnvironmentOrder", [])})
        for q in self.queues:
            if q.get("state") != "ENABLED" or q.get("status") != "VALID":
                problems.append(f"queue {q['jobQueueName']} is {q.get('state')}/{q.get('status')}")
        if ce_arns:
            self.ces = self.api.call("batch", "describe_compute_environments",
                                     computeEnvironments=ce_arns).get("computeEnvironments", [])
        for ce in self.ces:
            if ce.get("state") != "ENABLED" or ce.get("status") != "VALID":
                problems.append(f"compute environment {ce['computeEnvironmentName']} is "
                                f"{ce.get('state')}/{ce.get('status')}: {ce.get('statusReason', '')}".rstrip(": "))
        if problems:
            return [Check("batch-queues", FAIL, "; ".join(problems),
                          "an INVALID CE's statusReason says why; " + hints.apply_hint(self.config.env,
                                                                                     "the batch module"))]
        return [Check("batch-queues", PASS, f"{len(self.queues)} queues, {len(self.ces)} compute environments "
                      "enabled and valid")]

    def _min_vcpus(self, types: list[str]) -> int:
        concrete = [t for t in types if "." in t]
        if not concrete:
            return DEFAULT_MIN_VCPUS
        found = self.api.call("ec2", "describe_instance_types", InstanceTypes=concrete).get("InstanceTypes", [])
        values = [t["VCpuInfo"]["DefaultVCpus"] for t in found if "VCpuInfo" in t]
        return min(values) if values else DEFAULT_MIN_VCPUS

    def ec2_vcpu_quota(self) -> list[Check]:
        need: dict[tuple[str, str], int] = {}
        for ce in self.ces:
            res = ce.get("computeResources") or {}
            purchase = "spot" if res.get("type") in ("SPOT", "FARGATE_SPOT") else "on_demand"
            groups = {family_group(t) for t in res.get("instanceTypes", ["optimal"])}
            for group in groups:  # a mixed CE may use its whole max in any of its families
                need[(group, purchase)] = need.get((group, purchase), 0) + int(res.get("maxvCpus", 0))
        checks = []
        for key, vcpus in sorted(need.items()):
            code, label = EC2_QUOTAS[key]
            quota = self.api.call("service-quotas", "get_service_quota", ServiceCode="ec2",
                                  QuotaCode=code)["Quota"]["Value"]
            status = _ratio(quota, vcpus)
            checks.append(Check(
                f"ec2-vcpu-quota {key[0]}/{key[1]}", status,
                f"{label}: quota {quota:g} vCPUs, compute environments may use {vcpus}",
                "" if status == PASS else hints.ec2_quota_hint(code, vcpus),
            ))
        return checks or [Check("ec2-vcpu-quota", WARN, "no compute environments found",
                                  hints.queues_hint(self.config.env))]

    def subnet_ips(self) -> list[Check]:
        subnets = sorted({s for ce in self.ces for s in (ce.get("computeResources") or {}).get("subnets", [])})
        if not subnets:
            return [Check("subnet-ips", WARN, "compute environments list no subnets", "")]
        instances = 0
        for ce in self.ces:
            res = ce.get("computeResources") or {}
            instances += math.ceil(int(res.get("maxvCpus", 0)) / self._min_vcpus(res.get("instanceTypes", [])))
        free = sum(int(s.get("AvailableIpAddressCount", 0)) for s in
                   self.api.call("ec2", "describe_subnets", SubnetIds=subnets).get("Subnets", []))
        status = _ratio(free, instances)
        return [Check("subnet-ips", status,
                      f"{free} free IP addresses in {len(subnets)} subnets; the CEs can launch up to {instances} "
                      "instances (one IP each)",
                      "" if status == PASS else "add subnets (or larger ones) to the CEs, or lower max_vcpus")]

    def _quotas(self, service: str) -> list[dict[str, Any]]:
        return list(self.api.paginate("service-quotas", "list_service_quotas", "Quotas", cursor_in="NextToken",
                                      cursor_out="NextToken", ServiceCode=service))

    def batch_quotas(self) -> list[Check]:
        quotas = self._quotas("batch")
        checks = []
        for words, op, key in (("compute environment", "describe_compute_environments", "computeEnvironments"),
                               ("job queue", "describe_job_queues", "jobQueues")):
            quota = next((q for q in quotas if words in q.get("QuotaName", "").lower()), None)
            if quota is None:
                checks.append(Check(f"batch-quota {words}s", WARN, "quota not listed by Service Quotas", ""))
                continue
            used = sum(1 for _ in self.api.paginate("batch", op, key))
            status = PASS if used < 0.8 * quota["Value"] else (WARN if used < quota["Value"] else FAIL)
            checks.append(Check(f"batch-quota {words}s", status, f"{used} of {quota['Value']:g} in this Region",
                                "" if status == PASS else f"request an increase of '{quota['QuotaName']}'"))
        return checks

    def sfn_quota(self) -> list[Check]:
        quota = next((q for q in self._quotas("states") if "open executions" in q.get("QuotaName", "").lower()), None)
        running = sum(1 for _ in self.api.paginate("stepfunctions", "list_executions", "executions",
                                                   stateMachineArn=self.config.state_machine_arn,
                                                   statusFilter="RUNNING", maxResults=1000))
        if quota is None:
            return [Check("sfn-quota", WARN, f"{running} running; open-executions quota not listed", "")]
        status = PASS if running < 0.8 * quota["Value"] else (WARN if running < quota["Value"] else FAIL)
        return [Check("sfn-quota", status, f"{running} running executions of {quota['Value']:g} allowed",
                      "" if status == PASS else "let runs finish, or use larger runs (per_run) in submit_many")]

    # -- images and data
    def ecr_images(self) -> list[Check]:
        definition = json.loads(self.api.call("stepfunctions", "describe_state_machine",
                                              stateMachineArn=self.config.state_machine_arn)["definition"])
        job_defs = sorted(set(_find_values(definition, "JobDefinition")))
        if not job_defs:
            return [Check("ecr-images", PASS, "the workflow runs no Batch jobs")]
        found = self.api.call("batch", "describe_job_definitions", jobDefinitions=job_defs).get("jobDefinitions", [])
        images = sorted({d.get("containerProperties", {}).get("image", "") for d in found} - {""})
        problems, ok = [], 0
        for image in images:
            m = _ECR.match(image)
            if not m:
                problems.append(f"{image}: not an ECR image (cannot check)")
                continue
            image_id = {"imageDigest": m["digest"]} if m["digest"] else {"imageTag": m["tag"] or "latest"}
            try:
                self.api.with_region(m["region"]).call(
                    "ecr", "describe_images", registryId=m["registry"], repositoryName=m["repo"], imageIds=[image_id])
                ok += 1
            except AwsError as exc:
                if exc.aws_code not in ("ImageNotFoundException", "RepositoryNotFoundException"):
                    raise
                problems.append(f"{image}: {exc.aws_code}")
        missing = [d for d in job_defs if not any(d in (j.get("jobDefinitionArn"), j.get("jobDefinitionName"))
                                                  for j in found)]
        problems += [f"job definition {d} not found" for d in missing]
        if problems:
            return [Check("ecr-images", FAIL, "; ".join(problems), hints.images_hint(self.config.env))]
        return [Check("ecr-images", PASS, f"{ok} images of {len(job_defs)} job definitions exist in ECR")]

    # -- databases, weights and their import into FSx
    def _db_root(self) -> tuple[str, str] | None:
        """(bucket, key prefix of the database root: "" or ending in "/"); None if unknown."""
        if not self.config.db_uri:
            return None
        u = parse_uri(self.config.db_uri)
        prefix = u.key.strip("/")
        return u.bucket, f"{prefix}/" if prefix else ""

    def _no_db_uri(self, name: str) -> list[Check]:
        return [Check(name, WARN, "db_uri is not published in SSM", hints.db_uri_hint(self.config.env))]

    def _read(self, bucket: str, key: str, max_bytes: int) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            body = self.api.call("s3", "get_object", allow=("NoSuchKey", "404"), Bucket=bucket, Key=key)["Body"]
        except ClientError:
            return None
        return body.read(max_bytes + 1)

    def _objects(self, bucket: str, prefix: str) -> dict[str, int]:
        return {o["Key"]: int(o.get("Size", 0)) for o in self.api.paginate(
            "s3", "list_objects_v2", "Contents", cursor_in="ContinuationToken", cursor_out="NextContinuationToken",
            Bucket=bucket, Prefix=prefix)}

    def _refresh_hint(self) -> str:
        return hints.refresh_hint(self.config.state_machine_name, self.config.db_uri)

    def databases(self) -> list[Check]:
        root = self._db_root()
        if root is None:
            return self._no_db_uri("databases")
        bucket, base = root
        names = [p["Prefix"][len(base):].strip("/") for p in self.api.paginate(
            "s3", "list_objects_v2", "CommonPrefixes", cursor_in="ContinuationToken",
            cursor_out="NextContinuationToken", Bucket=bucket, Prefix=base, Delimiter="/")]
        found, problems, complete = [], [], []
        for name in sorted(n for n in names if _SAFE_NAME.match(n)):
            current = self._read(bucket, f"{base}{name}/CURRENT", 256)
            if current is None:
                continue  # not a database (e.g. weights/)
            version = current.decode("utf-8", "replace").strip()
            if not _SAFE_NAME.match(version):
                problems.append(f"{name}: CURRENT names an invalid version {version!r}")
                continue
            vbase = f"{base}{name}/{version}/"
            raw = self._read(bucket, f"{vbase}manifest.json", MAX_MANIFEST_BYTES)
            if raw is None:
                problems.append(f"{name}: CURRENT names {version}, which has no manifest.json")
                continue
            try:
                manifest = json.loads(raw)
            except ValueError:
                manifest = None
            files = manifest.get("files") if isinstance(manifest, dict) else None
            if not isinstance(files, dict):
                problems.append(f"{name}@{version}: manifest.json is not a valid manifest")
                continue
            sizes = self._objects(bucket, vbase)
            bad = [f for f, meta in sorted(files.items())
                   if f"{vbase}{f}" not in sizes
                   or (isinstance(meta, dict) and "bytes" in meta and sizes[f"{vbase}{f}"] != meta["bytes"])]
            if not files or bad:
                problems.append(f"{name}@{version}: " + (f"missing or wrong size: {', '.join(bad[:5])}" if bad
                                                           else "manifest.json lists no files"))
                continue
            found.append(f"{name}@{version} ({len(files)} files)")
            complete.append(InstalledDatabase(name, version, manifest))
        self.installed = complete
        if problems:
            return [Check("databases", FAIL, "; ".join(problems), self._refresh_hint())]
        if not found:
            return [Check("databases", FAIL, f"no database under {self.config.db_uri} (no <name>/CURRENT)",
                          self._refresh_hint())]
        return [Check("databases", PASS, "complete: " + ", ".join(found))]

    def db_presets(self) -> list[Check]:
        return [] if self.installed is None else [preset_check(self.installed)]

    def db_catalogue(self) -> list[Check]:
        return [] if self.installed is None else [catalogue_check(self.installed)]

    def weights(self) -> list[Check]:
        root = self._db_root()
        if root is None:
            return self._no_db_uri("weights")
        bucket, base = root
        wbase = f"{base}weights/"
        keys = self._objects(bucket, wbase)
        installed, missing, demo = [], [], []
        for engine in ENGINES:
            files = {k[len(f"{wbase}{engine}/"):] for k in keys if k.startswith(f"{wbase}{engine}/")}
            if engine == "esmfold":
                ok = "config.json" in files and any(f.endswith(".safetensors") for f in files)
            else:
                ok = any(re.fullmatch(r"params_[^/]+\.npz", f) for f in files - {AF2_OVERRIDES})
            (installed if ok else missing).append(engine)
            if ok and DEMO_MARKER in files:
                demo.append(engine)
        where = f"s3://{bucket}/{wbase}"
        fix = hints.weights_hint(where)
        if not installed:
            return [Check("weights", FAIL, f"no engine's weights under {where}", fix)]
        detail = f"installed: {', '.join(installed)}" + (f"; missing: {', '.join(missing)}" if missing else "")
        if demo:
            return [Check("weights", WARN, f"{detail}; DEMO (random) weights: {', '.join(demo)}", fix)]
        return [Check("weights", WARN if missing else PASS, detail, fix if missing else "")]

    def fsx_import(self) -> list[Check]:
        systems = [fs for fs in self.api.paginate("fsx", "describe_file_systems", "FileSystems",
                                                  cursor_in="NextToken", cursor_out="NextToken")
                   if {"Project": "foldstack", "Environment": self.config.env, "Role": "database"}.items()
                   <= {t["Key"]: t["Value"] for t in fs.get("Tags", [])}.items()]
        if not systems:
            return [Check("fsx-import", FAIL, f"no database FSx file system tagged Environment={self.config.env}",
                          hints.apply_hint(self.config.env, "the fsx module"))]
        problems, ok = [], 0
        want = (self.config.db_uri or "").rstrip("/") + "/"
        for fs in systems:
            fs_id = fs["FileSystemId"]
            if fs.get("Lifecycle") != "AVAILABLE":
                problems.append(f"{fs_id} is {fs.get('Lifecycle')}")
                continue
            dras = self.api.call("fsx", "describe_data_repository_associations",
                                 Filters=[{"Name": "file-system-id", "Values": [fs_id]}]).get("Associations", [])
            importing = [d for d in dras if d.get("Lifecycle") == "AVAILABLE"
                         and d.get("DataRepositoryPath", "").rstrip("/") + "/" == want
                         and {"NEW", "CHANGED"} <= set(((d.get("S3") or {}).get("AutoImportPolicy") or {})
                                                       .get("Events", []))]
            if importing:
                ok += 1
            else:
                states = ", ".join(f"{d.get('DataRepositoryPath')} {d.get('Lifecycle')}" for d in dras) or "none"
                problems.append(f"{fs_id}: no AVAILABLE auto-import association from {want} (associations: {states})")
        if problems:
            return [Check("fsx-import", FAIL, "; ".join(problems), hints.fsx_hint(self.config.env))]
        return [Check("fsx-import", PASS, f"{ok} database file systems import {want} automatically")]

    def run(self) -> list[Check]:
        checks: list[Check] = []
        for name, fn in (("batch-queues", self.batch_queues), ("ec2-vcpu-quota", self.ec2_vcpu_quota),
                         ("subnet-ips", self.subnet_ips), ("batch-quotas", self.batch_quotas),
                         ("sfn-quota", self.sfn_quota), ("ecr-images", self.ecr_images),
                         ("databases", self.databases), ("db-presets", self.db_presets),
                         ("db-catalogue", self.db_catalogue), ("weights", self.weights),
                         ("fsx-import", self.fsx_import)):
            checks.extend(self.guarded(name, fn))
        return checks


def _find_values(node: Any, key: str) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == key and isinstance(v, str)]
        for v in node.values():
            found += _find_values(v, key)
        return found
    if isinstance(node, list):
        return [x for item in node for x in _find_values(item, key)]
    return []


def run_checks(api: AwsApi, config: ClientConfig) -> list[Check]:
    return Doctor(api, config).run()


def render(checks: list[Check], env: str) -> Any:
    from rich.table import Table

    colours = {PASS: "green", WARN: "yellow", FAIL: "red"}
    table = Table("check", "result", "detail", "how to fix", title=f"foldstack doctor: {env}", show_lines=True)
    for c in checks:
        table.add_row(c.name, f"[{colours[c.status]}]{c.status.upper()}[/]", c.detail, c.fix)
    return table
