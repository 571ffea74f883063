"""The fault-injected soak (docs/reliability.md): many runs of the real rendered fold
definition on the local engine, with seeded faults, and the invariants checked over all.

What is real: the rendered ASL (``statemachines/rendered/fold.asl.json``), the Lambda
handlers (in-process), ``foldstack.storage`` (local paths, and S3 served by moto for a
share of the runs), the engine's Batch retry semantics from ``jobs.yaml``. What is fake:
the Batch command, ``soak_step.py`` (the step contract in a few milliseconds).

Faults (all decided from ``seed`` and the run/step/attempt they hit, so a run's faults do
not depend on thread timing):

=====================  ==========================================================
``spot_loss``          per Batch attempt: ``Host EC2 (instance ...) terminated.``
``throttle``           per SubmitJob: ``Batch.AWSBatchException`` (ASL Retry)
``crash``              per Batch attempt: exit 1 without running
``timeout``            per Batch attempt: killed by the job timeout (never retried)
``midway_crash``       per Batch attempt, inside the step: part of the outputs written
                       to the attempt dir, then the process dies without cleaning up
``oom``                per predict attempt, inside the step: exit 3
``lambda_transient``   per Lambda invocation, before the handler runs:
                       ``Lambda.ServiceException`` & co. (ASL Retry)
``lambda_lost_response`` per invocation, after the handler ran: the response is lost
                       and ``Lambda.ServiceException`` reported (the retry reruns it)
``storage_halfway``    per Stage Inputs / Collect Outputs invocation: the N-th
                       ``storage.write_bytes``/``copy`` writes half its bytes (an
                       orphaned temp file locally) and fails
``bad_target``         per target and step (msa, predict): bad input on every
                       attempt; its run publishes the others (partial, or failed
                       beyond the failure budget) and reports it failed
=====================  ==========================================================

The invariants are about behaviour, not state names (the definition is being extended):
every run ends terminal; every target of a run with a manifest is published or reported
failed with a code (each bad target among them), and every reported failure is one the
fault plan explains (the target was bad, or a fault hit a job that carried it), with no
finished predict output left behind for it: 0 succeeded targets lost; a SUCCEEDED run has every expected file under
``<out>/<run_id>/`` with the sha256 its manifest records and the fake step's content; a
run without ``manifest.json`` has nothing under ``<out>/<run_id>/``; no ``.partial``
leftovers; the run's scratch is gone (a FAILED run's but for finished targets' step
outputs, kept for a retry) and the cleanup Lambda ran (``failed`` matching the
outcome); every FAILED run names an error and a machine-readable cause; no
``States.Runtime``; no run fails unless a fault that can fail it was injected.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.asl_nodes import dict_nodes
from tests.jobspecs import size_classes_json
from tests.reliability.soak_step import bad_target, draw, expected_outputs, step_fault

REPO = Path(__file__).resolve().parents[2]
SOAK_STEP = Path(__file__).with_name("soak_step.py")
S3_BUCKET = "soak-results"
S3_PREFIX = f"s3://{S3_BUCKET}/runs"
AMINO = "ACDEFGHIKLMNPQRSTVWY"
LAMBDA_TRANSIENT = ("Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                    "Lambda.TooManyRequestsException")
# The faults that can, by design, end a run FAILED (with enough of them in a row).
BATCH_FATAL = ("crash", "timeout", "midway_crash", "oom")


@dataclass
class SoakConfig:
    runs: int = 80
    seed: int = 20240601
    concurrency: int = 16
    # per Batch attempt
    spot_loss: float = 0.30  # attempts on Spot queues (jobs.yaml `purchase: spot`)
    host_loss: float = 0.01  # attempts on on-demand queues: the same fault, at EC2 host-failure rates
    throttle: float = 0.05  # per SubmitJob call
    crash: float = 0.02
    timeout: float = 0.01
    midway_crash: float = 0.005
    oom: float = 0.005
    # per target: bad input on every attempt (its run publishes the others; see soak_step)
    bad_target: float = 0.02
    # per Lambda invocation
    lambda_transient: float = 0.05
    lambda_lost_response: float = 0.01
    # per Stage Inputs / Collect Outputs invocation
    storage_halfway: float = 0.04
    # workload mix
    bulk_runs: int = 1  # runs with > bulk threshold targets (Distributed Map), spread evenly
    bulk_targets: int = 201
    s3_fraction: float = 0.25
    file_input_fraction: float = 0.4
    alphafold2_fraction: float = 0.5
    run_timeout_s: float = 120.0
    # Known bugs (pinned by strict xfail tests in test_soak.py) are counted apart instead of
    # failing the soak; False makes them violations again.
    exempt_known_bugs: bool = True
    poll_interval: float = 0.02


# ----------------------------------------------------------------------------- the workload


@dataclass
class PlannedRun:
    index: int
    request: dict[str, Any]
    targets: dict[str, str]  # target id -> normalised sequence (chains joined by ':')
    run_id: str = ""
    output_root: str = ""  # local directory or s3://bucket/prefix


def plan_runs(cfg: SoakConfig, inputs_dir: Path, outputs_dir: Path) -> list[PlannedRun]:
    """Deterministic requests: engines, presets, MSA tools, 1-3 targets, size classes,
    inline and file inputs, local and S3 outputs, MSA reuse of earlier sequences."""
    plans: list[PlannedRun] = []
    seen_sequences: list[str] = []
    for i in range(cfg.runs):
        rng = random.Random(f"{cfg.seed}-plan-{i}")
        if cfg.bulk_runs and i % max(1, cfg.runs // cfg.bulk_runs) == max(1, cfg.runs // cfg.bulk_runs) // 2:
            plans.append(_bulk_run(cfg, i, rng, inputs_dir, outputs_dir))
            continue
        af2 = rng.random() < cfg.alphafold2_fraction
        multimer = af2 and rng.random() < 0.15
        n_targets = rng.choice((1, 1, 2, 3))
        targets: dict[str, str] = {}
        for j in range(n_targets):
            if af2 and not multimer and seen_sequences and rng.random() < 0.1:
                seq = rng.choice(seen_sequences)  # the same sequence again: MSA cache territory
            else:
                length = rng.randint(401, 520) if rng.random() < 0.1 else rng.randint(24, 90)
                if multimer:
                    cut = length // 2
                    raw = "".join(rng.choice(AMINO) for _ in range(length))
                    seq = f"{raw[:cut]}:{raw[cut:]}"
                else:
                    seq = "".join(rng.choice(AMINO) for _ in range(length))
            targets[f"t{j}-{rng.randint(0, 999)}"] = seq
        if af2:
            seen_sequences.extend(s for s in targets.values() if ":" not in s)
        output_root = S3_PREFIX if rng.random() < cfg.s3_fraction else str(outputs_dir)
        if rng.random() < cfg.file_input_fraction:
            path = inputs_dir / f"run{i:04d}.fasta"
            path.write_text("".join(f">{tid} soak run {i}\n{seq}\n" for tid, seq in targets.items()))
            inputs: list[Any] = [str(path)]
        else:
            inputs = [{"id": tid, "sequence": seq} for tid, seq in targets.items()]
        request: dict[str, Any] = {"inputs": inputs, "output_uri": output_root, "owner": f"soak{i:04d}",
                                   "tags": {"soak": str(cfg.seed)}}
        if af2:
            request.update(engine="alphafold2", preset="multimer" if multimer else "monomer",
                           msa_tool=rng.choice(("jackhmmer", "mmseqs2")), reuse_msa=rng.random() < 0.7)
        else:
            request.update(engine="esmfold", preset="monomer")
        plans.append(PlannedRun(i, request, targets, output_root=output_root))
    return plans


def _bulk_run(cfg: SoakConfig, i: int, rng: random.Random, inputs_dir: Path, outputs_dir: Path) -> PlannedRun:
    """Many short ESMFold targets in one FASTA file: over the bulk threshold, so the batches
    go through the Distributed Map."""
    targets = {f"b{j:04d}": "".join(rng.choice(AMINO) for _ in range(rng.randint(20, 40)))
               for j in range(cfg.bulk_targets)}
    path = inputs_dir / f"run{i:04d}-bulk.fasta"
    path.write_text("".join(f">{tid}\n{seq}\n" for tid, seq in targets.items()))
    output_root = S3_PREFIX if rng.random() < cfg.s3_fraction else str(outputs_dir)
    request = {"inputs": [str(path)], "output_uri": output_root, "owner": f"soak{i:04d}-bulk",
               "engine": "esmfold", "preset": "monomer", "tags": {"soak": str(cfg.seed)}}
    return PlannedRun(i, request, targets, output_root=output_root)


# ----------------------------------------------------------------------------- faults


@dataclass
class RunFaults:
    """What was injected into one run."""

    batch: list[tuple[str, str, int, str]] = field(default_factory=list)  # (job, target, attempt, fault)
    lambdas: list[tuple[str, int, str]] = field(default_factory=list)  # (lambda, invocation, fault)
    cleanup_calls: list[bool] = field(default_factory=list)  # `failed` of each completed cleanup call
    invocations: Counter = field(default_factory=Counter)


def _lambda_error_class(name: str) -> type[Exception]:
    # The local engine reports an exception's class name as the Step Functions error name.
    return type(name, (Exception,), {})


_LAMBDA_ERRORS = {n: _lambda_error_class(n) for n in LAMBDA_TRANSIENT}


class SoakInjector:
    """The engine's ``Injector`` (Batch attempts, Lambda invocations), plus the Lambda
    invoke wrapper and the storage patch that inject the other faults. Thread-safe."""

    def __init__(self, cfg: SoakConfig):
        self.cfg = cfg
        self.seed = str(cfg.seed)
        self.runs: dict[str, RunFaults] = defaultdict(RunFaults)
        self.counts: Counter = Counter()
        self.observed: Counter = Counter()
        self._submits: Counter = Counter()
        self._lock = threading.Lock()
        self._tls = threading.local()
        jobs = yaml.safe_load((REPO / "statemachines/fold/jobs.yaml").read_text())
        self.spot_queues = {k for k, q in jobs.get("queues", {}).items() if q.get("purchase") == "spot"}

    # -- Batch
    def before_batch_attempt(self, job: Any, attempt: int) -> str | None:
        params = job.parameters
        run_id, target = params.get("run_id", ""), params.get("target", "")
        key = (run_id, job.state_name, target)
        with self._lock:
            if attempt == 1:
                self._submits[key] += 1
            submit = self._submits[key]
        u = draw(self.seed, "batch", run_id, job.state_name, target, submit, attempt)
        c = self.cfg
        spot = job.queue in self.spot_queues
        lost = c.spot_loss if spot else c.host_loss
        fault: str | None = None
        if u < lost:
            fault = "spot_loss"
        elif u < lost + c.crash:
            fault = "crash"
        elif u < lost + c.crash + c.timeout:
            fault = "timeout"
        elif attempt == 1 and u < lost + c.crash + c.timeout + c.throttle:
            fault = "throttle"
        recorded = "host_loss" if fault == "spot_loss" and not spot else fault
        if fault is None:  # the step runs: it may fail itself (seeded the same way)
            from foldstack.local.jobs import queue_arn

            queue_name = queue_arn(job.queue).rsplit("/", 1)[-1]  # the job's AWS_BATCH_JQ_NAME
            recorded = step_fault(job.job, run_id, target, attempt, queue_name, self.step_env())
        if recorded is not None:
            with self._lock:
                self.counts[recorded] += 1
                self.runs[run_id].batch.append((job.job, target, attempt, recorded))
        return fault

    def step_env(self) -> dict[str, str]:
        return {"SOAK_SEED": self.seed, "SOAK_MIDWAY_CRASH_RATE": str(self.cfg.midway_crash),
                "SOAK_OOM_RATE": str(self.cfg.oom), "SOAK_BAD_TARGET_RATE": str(self.cfg.bad_target)}

    # -- Lambda
    def before_lambda(self, name: str, event: Any) -> BaseException | None:
        ctx = getattr(self._tls, "ctx", None)
        if ctx is None:
            return None
        run_id, _, n = ctx
        u = draw(self.seed, "lambda", run_id, name, n)
        if u < self.cfg.lambda_transient:
            error = LAMBDA_TRANSIENT[int(u / self.cfg.lambda_transient * len(LAMBDA_TRANSIENT))]
            self._record(run_id, name, n, "lambda_transient")
            return _LAMBDA_ERRORS[error]("injected: Lambda service error before the handler ran")
        if name in ("stage_inputs", "collect_outputs") and draw(self.seed, "storage", run_id, name, n) < \
                self.cfg.storage_halfway:
            self._tls.storage_fail_at = 1 + int(draw(self.seed, "storage-at", run_id, name, n) * 4)
            self._tls.storage_calls = 0
        return None

    def _record(self, run_id: str, name: str, n: int, fault: str) -> None:
        with self._lock:
            self.counts[fault] += 1
            self.runs[run_id].lambdas.append((name, n, fault))

    def wrap_invoke(self, invoke):
        from foldstack.local.errors import LambdaInvocationError
        from foldstack.local.lambdas import error_payload, function_name_of

        def invoke_with_faults(function: str, event: Any) -> Any:
            name = function_name_of(function)
            run_id = event.get("run_id", "") if isinstance(event, dict) else ""
            with self._lock:
                faults = self.runs[run_id]
                faults.invocations[name] += 1
                n = faults.invocations[name]
            self._tls.ctx = (run_id, name, n)
            try:
                result = invoke(function, event)
            finally:
                self._tls.ctx = None
                self._tls.storage_fail_at = None
            if name == "msa_cache" and isinstance(result, dict):
                with self._lock:
                    self.observed["msa_cache_hits" if result.get("hit") else "msa_cache_misses"] += 1
            if name == "cleanup" and isinstance(event, dict):
                with self._lock:
                    faults.cleanup_calls.append(bool(event.get("failed")))
            if draw(self.seed, "lost", run_id, name, n) < self.cfg.lambda_lost_response:
                self._record(run_id, name, n, "lambda_lost_response")
                exc = _LAMBDA_ERRORS["Lambda.ServiceException"]("injected: the handler ran, its response was lost")
                raise LambdaInvocationError(type(exc).__name__, error_payload(exc))
            return result

        return invoke_with_faults

    # -- storage
    def _storage_fault_due(self) -> bool:
        fail_at = getattr(self._tls, "storage_fail_at", None)
        if not fail_at:
            return False
        self._tls.storage_calls += 1
        if self._tls.storage_calls != fail_at:
            return False
        self._tls.storage_fail_at = None
        ctx = self._tls.ctx
        self._record(ctx[0], ctx[1], ctx[2], "storage_halfway")
        return True

    @contextlib.contextmanager
    def patched_storage(self) -> Iterator[None]:
        """``foldstack.storage.write_bytes``/``copy`` fail on the armed call after
        writing half: locally an orphaned temp file (as a killed writer leaves), on S3 the
        objects written before it stay (S3 puts are atomic; a multi-object copy is not)."""
        from foldstack import storage
        from foldstack.core.uris import parse_uri

        real_write, real_copy = storage.write_bytes, storage.copy

        def torn(uri: str, data: bytes) -> None:
            u = parse_uri(uri)
            with self._lock:
                self.observed["storage_halfway_s3" if u.is_s3 else "storage_halfway_local"] += 1
            if not u.is_s3:
                path = Path(u.key)
                path.parent.mkdir(parents=True, exist_ok=True)
                (path.parent / f".{path.name}.soak{os.getpid()}.tmp").write_bytes(data[: len(data) // 2])
                raise ConnectionResetError(104, f"injected: connection reset after {len(data) // 2} bytes", uri)
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected: We encountered an "
                                         "internal error. Please try again."}}, "PutObject")

        def write_bytes(uri: str, data: bytes, **kwargs: Any) -> None:
            if self._storage_fault_due():
                torn(uri, data)
            return real_write(uri, data, **kwargs)

        def copy(src: str, dst: str, **kwargs: Any) -> None:
            if self._storage_fault_due():
                torn(dst, real_read(src))
            return real_copy(src, dst, **kwargs)

        real_read = storage.read_bytes
        storage.write_bytes, storage.copy = write_bytes, copy
        try:
            yield
        finally:
            storage.write_bytes, storage.copy = real_write, real_copy


# ----------------------------------------------------------------------------- the estate


@dataclass
class SoakEstate:
    root: Path
    inputs: Path
    outputs: Path
    scratch: Path
    cache: Path
    logs: Path
    jobs_yaml: Path

    @classmethod
    def make(cls, root: Path) -> SoakEstate:
        dirs = {n: root / n for n in ("inputs", "outputs", "scratch", "cache", "logs", "db", "weights")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        # One "database" with a version, so MSA cache keys resolve (db/<name>/CURRENT).
        (dirs["db"] / "uniref90").mkdir(exist_ok=True)
        (dirs["db"] / "uniref90" / "CURRENT").write_text("2024_01\n")
        return cls(root, dirs["inputs"], dirs["outputs"], dirs["scratch"], dirs["cache"], dirs["logs"],
                   soak_jobs_yaml(root))


def leftover_scratch(scratch: Path, complete: set[str]) -> list[str]:
    """What cleanup should have removed, across every run: all of a run that published
    every target, and of any other run (partial, failed) all but its finished targets'
    step folders, which stay for its retry (tasks/cleanup.py)."""
    wrong = []
    for run_dir in sorted(scratch.iterdir()):
        if run_dir.name in complete or not run_dir.is_dir() or run_dir.is_symlink():
            wrong.append(run_dir.name)
        else:
            wrong += [f"{run_dir.name}/{rel}" for rel in _not_finished_work(run_dir)]
    return wrong


def soak_command(cmd: list[str] | tuple[str, ...]) -> list[str]:
    """``foldstack step <name> ...`` -> ``python soak_step.py <name> ...``; others unchanged."""
    cmd = list(cmd)
    if cmd[:2] == ["foldstack", "step"]:
        return ["python", "-I", "-S", str(SOAK_STEP), *cmd[2:]]
    return cmd


@contextlib.contextmanager
def soak_command_overrides() -> Iterator[None]:
    """The workflow also runs steps through SubmitJob ``ContainerOverrides.Command`` (the
    chain search phase runs ``foldstack step msa-chains`` under the msa job definition):
    those commands go to the fake step too, as the job definitions' own commands do."""
    import foldstack.local.batch as local_batch

    real = local_batch.build_argv

    def build_argv(command, parameters):
        return real(soak_command(command), parameters)

    local_batch.build_argv = build_argv
    try:
        yield
    finally:
        local_batch.build_argv = real


def soak_jobs_yaml(root: Path) -> Path:
    """The real jobs.yaml (retry rules, timeouts, queues, size classes) with every
    ``foldstack step <name> ...`` command replaced by ``soak_step.py <name> ...``."""
    data = yaml.safe_load((REPO / "statemachines/fold/jobs.yaml").read_text())
    for job in data["jobs"].values():
        job["command"] = soak_command(job["command"])
    path = root / "jobs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.contextmanager
def moto_s3() -> Iterator[Any]:
    """A moto S3 with the results bucket (Lambdas run in-process, so they see it)."""
    import boto3
    from moto import mock_aws

    from foldstack import storage

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                            "AWS_DEFAULT_REGION", "AWS_PROFILE")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_PROFILE", None)
    try:
        with mock_aws():
            storage.reset_clients()
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket=S3_BUCKET)
            yield s3
    finally:
        storage.reset_clients()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ----------------------------------------------------------------------------- results


@dataclass
class RunOutcome:
    index: int
    run_id: str
    status: str
    error: str | None
    cause: str | None
    reason: str
    seconds: float
    runtime_errors: list[str]
    violations: list[str]
    batch_attempt_retries: int = 0
    batch_submit_retries: int = 0
    lambda_retries: int = 0
    faults: list[str] = field(default_factory=list)
    known_bugs: list[str] = field(default_factory=list)
    # from the manifest, when the run published one: its outcome, targets published, and
    # each failed target's code
    outcome: str | None = None
    published: int = 0
    failure_codes: list[str] = field(default_factory=list)


@dataclass
class SoakReport:
    config: dict[str, Any]
    wall_s: float
    runs: int
    statuses: Counter
    failed_by_reason: Counter
    faults: Counter
    retries: Counter
    observed: Counter
    known_bugs: Counter
    violations: list[str]
    outcomes: list[RunOutcome]

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "wall_s": round(self.wall_s, 1),
            "statuses": dict(sorted(self.statuses.items())),
            "failed_by_reason": dict(self.failed_by_reason.most_common()),
            "faults_injected": dict(self.faults.most_common()),
            "retries_observed": dict(sorted(self.retries.items())),
            "observed": dict(sorted(self.observed.items())),
            "invariants": {
                "lost_outputs": _count(self.violations, "lost-output"),
                "partial_outputs_visible": _count(self.violations, "partial-output"),
                "non_terminal_runs": _count(self.violations, "non-terminal"),
                "failed_without_reason": _count(self.violations, "no-reason"),
                "cleanup_missing": _count(self.violations, "cleanup"),
                "states_runtime": _count(self.violations, "states-runtime"),
                "unexplained_failures": _count(self.violations, "unexplained-failure"),
            },
            "known_bugs": dict(self.known_bugs),
            "violations": len(self.violations),
        }

    def format(self) -> str:
        s = self.summary()
        lines = [f"soak: {s['runs']} runs in {s['wall_s']} s (seed {self.config['seed']}, "
                 f"concurrency {self.config['concurrency']})",
                 f"  statuses:          {s['statuses']}",
                 f"  failed by reason:  {s['failed_by_reason']}",
                 f"  faults injected:   {s['faults_injected']}",
                 f"  retries observed:  {s['retries_observed']}",
                 f"  also observed:     {s['observed']}",
                 f"  invariants:        {s['invariants']}",
                 f"  known bugs hit:    {s['known_bugs']}"]
        lines += [f"  VIOLATION {v}" for v in self.violations[:40]]
        if len(self.violations) > 40:
            lines.append(f"  ... and {len(self.violations) - 40} more")
        return "\n".join(lines)


def _count(violations: list[str], kind: str) -> int:
    return sum(1 for v in violations if v.startswith(f"[{kind}]"))


# ----------------------------------------------------------------------------- checks


def _machine_readable(cause: str | None) -> bool:
    if not cause:
        return False
    try:
        json.loads(cause)
        return True
    except ValueError:
        pass
    return "[" in cause and "]" in cause and cause.index("[") < cause.index("]")


def classify_failure(error: str | None, cause: str | None) -> str:
    """A short reason for a failed run: the error name and, for a Batch job, why it
    ended (the last attempt's status reason / exit code); for a Lambda, its errorType."""
    reason = error or "?"
    try:
        doc = json.loads(cause or "")
    except ValueError:
        return reason
    if isinstance(doc, dict) and "Attempts" in doc:
        attempts = doc.get("Attempts") or []
        last = attempts[-1] if attempts else {}
        container = last.get("Container", {}) if isinstance(last, dict) else {}
        status_reason = str(last.get("StatusReason") or doc.get("StatusReason") or "")
        job = str(doc.get("JobName", "")).rsplit("-", 1)[-1]
        if status_reason.startswith("Host EC2"):
            why = "spot/host lost on every attempt"
        elif "timeout" in status_reason.lower() or "Timeout" in status_reason:
            why = "timeout"
        elif "ExitCode" in container:
            why = f"exit {container['ExitCode']}"
        else:
            why = status_reason or "?"
        return f"{reason}: {job} {why} ({len(attempts)} attempts)"
    if isinstance(doc, dict) and "errorType" in doc and doc["errorType"] != reason:
        return f"{reason} ({doc['errorType']})"
    return reason


def _s3_keys(s3: Any, prefix_uri: str) -> list[str]:
    bucket, _, prefix = prefix_uri.removeprefix("s3://").partition("/")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for p in pages for o in p.get("Contents", []))


def _read_output(s3: Any, root: str, rel: str) -> bytes:
    if root.startswith("s3://"):
        bucket, _, prefix = root.removeprefix("s3://").partition("/")
        return s3.get_object(Bucket=bucket, Key=f"{prefix}/{rel}")["Body"].read()
    return (Path(root) / rel).read_bytes()


def _listing(s3: Any, root: str) -> list[str]:
    """Relative paths of everything under an output run prefix (files and symlinks)."""
    if root.startswith("s3://"):
        return [k.lstrip("/") for k in _s3_keys(s3, root + "/")]
    base = Path(root)
    if not base.exists() and not base.is_symlink():
        return []
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file() or p.is_symlink())


def expected_files(plan: PlannedRun, targets: set[str] | None = None) -> dict[str, bytes]:
    """Every published file of a successful run (relative to ``<out>/<run_id>/``), manifest
    aside; with `targets`, of those targets only (a partial run's published ones)."""
    req = plan.request
    out: dict[str, bytes] = {}
    for tid, seq in plan.targets.items():
        if targets is not None and tid not in targets:
            continue
        predicted = expected_outputs("predict", seq, {"engine": req["engine"], "preset": req["preset"]})
        out.update({f"{tid}/{rel}": data for rel, data in predicted.items()})
        if req["engine"] == "alphafold2":
            msa = expected_outputs("msa", seq, {"msa_tool": req["msa_tool"]})
            out.update({f"{tid}/msa/{rel}": msa[rel] for rel in ("msa.a3m", "features.json")})
    return out


# Known bugs: (kind, predicate(error, cause)) -> id. See test_soak.py's strict xfails.
KNOWN_BUGS = {
    "bulk-failure-cause-not-machine-readable":
        lambda error, cause: error == "States.ExceedToleratedFailureThreshold" and not _machine_readable(cause),
}


def _not_kept_folder(folder: Path, step: str) -> bool:
    try:
        outputs = json.loads((folder / f"{step}.done.json").read_text())["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return not outputs or any(not (folder / rel).is_file()
                              or hashlib.sha256((folder / rel).read_bytes()).hexdigest() != digest
                              for rel, digest in outputs.items())


def _not_finished_work(scratch: Path) -> list[str]:
    """Files of a failed run's scratch that Cleanup should have removed: everything but
    the finished targets' step folders (``<step>/<target>/`` whose done record lists files
    that are all there with their sha256)."""
    stray = []
    for path in sorted(scratch.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        parts = path.relative_to(scratch).parts
        if len(parts) < 3 or path.is_symlink() or _not_kept_folder(scratch / parts[0] / parts[1], parts[0]):
            stray.append("/".join(parts))
    return stray


def unpublished_leftovers(listing: list[str]) -> list[str]:
    """What a run prefix without a manifest may not hold: anything but published targets
    (``<target>/...`` with its ``target.json``) and their ``structures/<target>.cif``."""
    published = {rel.split("/", 1)[0] for rel in listing if rel.count("/") == 1 and rel.endswith("/target.json")}
    return [rel for rel in listing if rel.split("/", 1)[0] not in published
            and not (rel.startswith("structures/") and rel[len("structures/"):-len(".cif")] in published)]


# A Lambda fault that, retried out, reports its batch's targets failed (never a step's work lost).
PUBLISH_CODES = {"not_published"}


def unexplained_failures(rid: str, failed: dict[str, Any], faults: RunFaults, bad_targets: frozenset[str],
                         scratch: Path) -> list[str]:
    """The run's reported failures the fault plan does not explain: a target neither bad
    (``bad_targets``) nor carried by a Batch job a fault hit (``faults.batch``; a batched
    predict job's ``target`` lists its batch), nor ``not_published`` after injected Lambda
    faults (its finished work is kept in scratch for a retry); and any other failed target
    whose predict output is finished in the kept scratch (it folded: reporting it failed
    loses good work)."""
    hit = {t for _job, target, _attempt, _fault in faults.batch for t in str(target).split(",") if t}
    lambda_faults = bool(faults.lambdas)
    out = []
    for target, failure in sorted(failed.items()):
        unpublished = lambda_faults and failure.get("code") in PUBLISH_CODES  # kept in scratch for a retry
        explained = target in bad_targets or target in hit or unpublished
        folder = scratch / "predict" / target
        folded = not unpublished and folder.is_dir() and not _not_kept_folder(folder, "predict")
        if not explained or folded:
            out.append(f"{target} ({failure.get('code')})")
    return out


def check_run(plan: PlannedRun, execution: Any, faults: RunFaults, estate: SoakEstate, s3: Any,
              lambda_max_attempts: int, exempt_known_bugs: bool = True,
              bad_targets: frozenset[str] = frozenset(), msa_only_bad: frozenset[str] = frozenset()) -> RunOutcome:
    """`bad_targets`: the run's targets the fake step treats as bad input (each must be
    reported failed, never published; they explain a run failed on its budget), except
    those of `msa_only_bad` (bad for the msa step only) whose MSA came from the cache."""
    v: list[str] = []
    known: list[str] = []
    tally: dict[str, Any] = {}
    rid = plan.run_id
    status = execution.status
    error, cause = execution.error, execution.cause
    history = execution.history()
    if status not in ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"):
        v.append(f"[non-terminal] {rid}: {status}")
    elif status not in ("SUCCEEDED", "FAILED"):
        v.append(f"[non-terminal] {rid}: ended {status}, expected SUCCEEDED or FAILED")
    runtime = list(execution.runtime_errors) + [
        f"{e.type} in {e.state_name}: {e.cause}" for e in history if (e.error or "") == "States.Runtime"]
    if runtime or error == "States.Runtime":
        v.append(f"[states-runtime] {rid}: {runtime[:1] or [cause]}")

    # -- outputs
    root = plan.output_root.rstrip("/") + "/" + rid
    listing = _listing(s3, root)
    # A run publishes each target that folded, whatever happens to the others: a SUCCEEDED run
    # (outcome succeeded or partial) and a run FAILED on its failure budget (outcome failed)
    # have a manifest listing every published target and every other target as a coded
    # failure; a run that FAILED before its manifest may keep only published targets.
    if status == "SUCCEEDED" or (status == "FAILED" and "manifest.json" in listing):
        if "manifest.json" not in listing:
            v.append(f"[lost-output] {rid}: SUCCEEDED without {root}/manifest.json")
        else:
            manifest = json.loads(_read_output(s3, root, "manifest.json"))
            published = {t["id"] for t in manifest.get("targets", [])}
            failed = {f["target"]: f for f in manifest.get("failures", [])}
            expected = expected_files(plan, published)
            unaccounted = sorted(set(plan.targets) - published - set(failed))
            if unaccounted:
                v.append(f"[lost-output] {rid}: targets neither published nor reported failed: {unaccounted[:5]}")
            # a bad target fails: as bad_input, or by an injected job fault that ended it first;
            # one bad only for the msa step folds when its alignment came from the MSA cache
            # (an earlier run searched that sequence: no msa job ran for it here)
            from_cache = {t["id"] for t in manifest.get("targets", [])
                          if ((t.get("provenance") or {}).get("msa") or {}).get("msa_cache") == "hit"}
            unreported = sorted(t for t in bad_targets if (t not in failed or t in published)
                                and not (t in msa_only_bad and t in from_cache))
            if unreported:
                v.append(f"[unexplained-failure] {rid}: bad targets not reported failed: {unreported[:5]}")
            uncoded = sorted(t for t, f in failed.items() if not f.get("code"))
            if uncoded:
                v.append(f"[unexplained-failure] {rid}: failed targets without a code: {uncoded[:5]}")
            # 0 succeeded targets lost: each reported failure is one the fault plan explains
            # (a bad target, or a fault injected on a job that carried it), never a target
            # that folded and was then reported failed (not published, or mislabelled).
            mislabelled = unexplained_failures(rid, failed, faults, bad_targets, estate.scratch / rid)
            if mislabelled:
                v.append(f"[lost-output] {rid}: targets reported failed that no injected fault explains: "
                         f"{mislabelled[:5]}")
            outcome = manifest.get("outcome", "succeeded")
            tally = {"outcome": outcome, "published": len(published),
                     "failure_codes": [str(f.get("code")) for f in failed.values()]}
            if (status == "FAILED") != (outcome == "failed") or (outcome == "succeeded") != (not failed):
                v.append(f"[lost-output] {rid}: {status} with outcome {outcome!r} and {len(failed)} failure(s)")
            recorded = {f"{t['id']}/{rel}": meta["sha256"] for t in manifest.get("targets", [])
                        for rel, meta in t.get("files", {}).items()}
            # What Collect itself writes (each target's report, the run's summary and index
            # pages and the viewer): listed in the manifest, not made by a step.
            generated = {rel: sha for rel, sha in recorded.items() if rel.endswith("/report.html")}
            generated |= {rel: meta["sha256"] for rel, meta in (manifest.get("run_files") or {}).items()}
            for rel, sha in generated.items():
                if rel not in listing or hashlib.sha256(_read_output(s3, root, rel)).hexdigest() != sha:
                    v.append(f"[lost-output] {rid}: {rel} (written by Collect) missing or not as recorded")
            recorded = {rel: sha for rel, sha in recorded.items() if rel not in generated}
            for rel, data in expected.items():
                if rel not in listing:
                    v.append(f"[lost-output] {rid}: {rel} missing")
                    continue
                got = _read_output(s3, root, rel)
                if recorded.get(rel) != hashlib.sha256(got).hexdigest():
                    v.append(f"[lost-output] {rid}: {rel} sha256 differs from the manifest")
                if got != data:
                    v.append(f"[lost-output] {rid}: {rel} content is not what the step wrote")
            extra = sorted(set(listing) - set(expected) - set(generated) - {"manifest.json"})
            if extra:
                v.append(f"[partial-output] {rid}: unexpected files under the run prefix: {extra[:5]}")
            if set(recorded) != set(expected):
                v.append(f"[lost-output] {rid}: manifest lists {sorted(set(recorded) ^ set(expected))[:5]} "
                         "differently from the expected files")
        output = execution.output or {}
        if isinstance(output, dict) and output.get("output") and output["output"].rstrip("/") != root:
            v.append(f"[lost-output] {rid}: execution output names {output['output']}, expected {root}")
    elif unpublished_leftovers(listing):
        stray = unpublished_leftovers(listing)
        v.append(f"[partial-output] {rid}: {status} run left {len(stray)} object(s) under {root}: {stray[:5]}")
    if not plan.output_root.startswith("s3://"):
        leftovers = [p.name for p in Path(plan.output_root).glob(f".{rid}*")]
        if leftovers:
            v.append(f"[partial-output] {rid}: leftovers next to the run prefix: {leftovers}")

    # -- cleanup
    scratch = estate.scratch / rid
    if tally.get("outcome", "failed") != "succeeded" and scratch.is_dir() and not scratch.is_symlink():
        stray = _not_finished_work(scratch)  # a partial or failed run keeps finished targets for a retry
        if stray:
            v.append(f"[cleanup] {rid}: scratch holds more than finished targets' step outputs: {stray[:5]}")
    elif scratch.exists() or scratch.is_symlink():
        left = sorted(str(p.relative_to(estate.scratch)) for p in scratch.rglob("*"))[:5]
        v.append(f"[cleanup] {rid}: scratch dir still there: {left}")
    if not faults.cleanup_calls:
        v.append(f"[cleanup] {rid}: the cleanup Lambda never completed")
    elif status in ("SUCCEEDED", "FAILED") and faults.cleanup_calls[-1] != (status == "FAILED"):
        v.append(f"[cleanup] {rid}: cleanup ran with failed={faults.cleanup_calls[-1]} for a {status} run")
    cleanup_entered = any(e.type == "TaskScheduled" and _lambda_of(e) == "cleanup" for e in history)
    if not cleanup_entered:
        v.append(f"[cleanup] {rid}: no Task invoking the cleanup Lambda in the history")

    # -- failure reason
    reason = ""
    if status == "FAILED":
        reason = classify_failure(error, cause)
        if not error or not _machine_readable(cause):
            bug = next((k for k, hit in KNOWN_BUGS.items() if hit(error, cause)), None)
            if bug and exempt_known_bugs:
                known.append(bug)
            else:
                v.append(f"[no-reason] {rid}: error={error!r} cause={(cause or '')[:200]!r}")
        if not _could_fail(faults, lambda_max_attempts) and not bad_targets:
            v.append(f"[unexplained-failure] {rid}: FAILED ({reason}) with only benign faults injected: "
                     f"{faults.batch + faults.lambdas}")

    # -- retries observed (from the history: a Task state entered once, scheduled N times)
    lambda_retries = submit_retries = 0
    entered: Counter = Counter()
    scheduled: Counter = Counter()
    for e in history:
        key = (e.map_path, e.state_name)
        if e.type == "TaskStateEntered":
            entered[key] += 1
        elif e.type == "TaskScheduled":
            scheduled[(key, e.details.get("resourceType", ""))] += 1
    for (key, rtype), n in scheduled.items():
        extra = n - entered[key]
        if rtype == "batch":
            submit_retries += extra
        else:
            lambda_retries += extra
    batch_retries = sum(max(0, len(j.get("Attempts", [])) - 1) for j in execution.batch_jobs())
    return RunOutcome(plan.index, rid, status, error, cause, reason,
                      ((execution.stop_date or execution.start_date) - execution.start_date).total_seconds(),
                      runtime, v, batch_retries, submit_retries, lambda_retries,
                      [f[-1] for f in faults.batch] + [f[-1] for f in faults.lambdas], known, **tally)


def _lambda_of(event: Any) -> str | None:
    """The Lambda function a TaskScheduled event invokes (None for other resources)."""
    from foldstack.local.lambdas import function_name_of

    if event.details.get("resourceType") != "lambda":
        return None
    try:
        params = json.loads(event.details.get("parameters") or "{}")
    except ValueError:
        return None
    return function_name_of(str(params.get("FunctionName", "")))


def _could_fail(faults: RunFaults, lambda_max_attempts: int) -> bool:
    """Whether the injected faults can, by design, fail the run: a fatal Batch fault, a
    job whose every attempt was lost to Spot (the engine's retry rules decide how many),
    a storage failure, or more Lambda errors in a row than the ASL retries."""
    if any(f[-1] in BATCH_FATAL for f in faults.batch):
        return True
    if any(f[-1] == "storage_halfway" for f in faults.lambdas):
        return True
    # Spot loss: a job fails when its attempts run out (predict has 2, msa 3); a second
    # spot loss on one job is where that becomes possible.
    if any(f[-1] in ("spot_loss", "host_loss") and f[2] > 1 for f in faults.batch):
        return True
    by_lambda: dict[str, list[int]] = defaultdict(list)
    for name, n, fault in faults.lambdas:
        if fault.startswith("lambda_"):
            by_lambda[name].append(n)
    for calls in by_lambda.values():
        calls.sort()
        run = best = 1
        for a, b in zip(calls, calls[1:], strict=False):
            run = run + 1 if b == a + 1 else 1
            best = max(best, run)
        if best > lambda_max_attempts:
            return True
    return False


def lambda_retry_attempts(definition: dict[str, Any]) -> int:
    """The largest MaxAttempts of any Retry rule for Lambda.ServiceException."""
    best = 0

    for node in dict_nodes(definition):
        for rule in node.get("Retry", []) if isinstance(node.get("Retry"), list) else []:
            if "Lambda.ServiceException" in rule.get("ErrorEquals", []):
                best = max(best, int(rule.get("MaxAttempts", 3)))
    return best


# ----------------------------------------------------------------------------- the driver


def run_soak(cfg: SoakConfig, workdir: Path, *, progress: bool = False) -> SoakReport:
    from foldstack.core.request import RunRequest
    from foldstack.local import LocalEngine
    from foldstack.tasks.settings import TaskSettings
    from foldstack.tasks.validate import validate_run

    estate = SoakEstate.make(Path(workdir))
    definition = (REPO / "statemachines/rendered/fold.asl.json").read_text()
    max_lambda_attempts = lambda_retry_attempts(json.loads(definition))
    lambda_env = {
        "FOLDSTACK_SCRATCH_ROOT": str(estate.scratch),
        "FOLDSTACK_ALLOWED_INPUT_PREFIXES": str(estate.inputs),
        "FOLDSTACK_ALLOWED_OUTPUT_PREFIXES": f"{estate.outputs},{S3_PREFIX}",
        "FOLDSTACK_SIZE_CLASSES": size_classes_json(),
        "FOLDSTACK_CACHE_ROOT": str(estate.cache),
        "FOLDSTACK_DB_ROOT": str(estate.root / "db"),
        "FOLDSTACK_LOG_LEVEL": "ERROR",
    }
    settings = TaskSettings.from_env(lambda_env)
    injector = SoakInjector(cfg)
    plans = plan_runs(cfg, estate.inputs, estate.outputs)
    for plan in plans:
        request = RunRequest.model_validate(plan.request)
        _, _, _, plan.run_id = validate_run(
            request, allowed_input_prefixes=settings.allowed_input_prefixes,
            allowed_output_prefixes=settings.allowed_output_prefixes, size_classes=settings.size_classes,
            limits=settings.limits)
        plan.request = request.model_dump(mode="json")
    assert len({p.run_id for p in plans}) == len(plans), "soak requests must have distinct run ids"

    outcomes: list[RunOutcome] = []
    violations: list[str] = []
    observed: Counter = Counter()
    t0 = time.monotonic()
    with moto_s3() as s3, injector.patched_storage(), soak_command_overrides():
        placeholders = {"scratch_mount": str(estate.scratch), "db_mount": str(estate.root / "db"),
                        "weights_dir": str(estate.root / "weights"), "cache_mount": str(estate.cache),
                        "cache_root": str(estate.cache), "msa_cache_uri": str(estate.cache)}
        engine = LocalEngine(definition, jobs_yaml=estate.jobs_yaml, lambda_env=lambda_env,
                             job_env=injector.step_env(), placeholders=placeholders, log_dir=estate.logs,
                             wait_scale=0.0, poll_interval=cfg.poll_interval, injector=injector)
        engine.lambdas.invoke = injector.wrap_invoke(engine.lambdas.invoke)
        pending = list(plans)
        in_flight: dict[str, tuple[PlannedRun, Any, float]] = {}
        while pending or in_flight:
            while pending and len(in_flight) < cfg.concurrency:
                plan = pending.pop(0)
                execution = engine.start_execution(plan.run_id, {"run_id": plan.run_id, "request": plan.request})
                in_flight[plan.run_id] = (plan, execution, time.monotonic())
            finished = [rid for rid, (_, ex, started) in in_flight.items()
                        if ex.done() or time.monotonic() - started > cfg.run_timeout_s]
            for rid in finished:
                plan, execution, _ = in_flight.pop(rid)
                execution.wait(1.0, raise_on_runtime_error=False)
                steps = ("msa", "predict") if plan.request.get("engine") == "alphafold2" else ("predict",)
                bad_for = {t: {step for step in steps if bad_target(step, rid, t, injector.step_env())}
                           for t in plan.targets}
                bad = frozenset(t for t, bad_steps in bad_for.items() if bad_steps)
                msa_only = frozenset(t for t, bad_steps in bad_for.items() if bad_steps == {"msa"})
                outcome = check_run(plan, execution, injector.runs[rid], estate, s3, max_lambda_attempts,
                                    cfg.exempt_known_bugs, bad, msa_only)
                if not execution.done():
                    execution.stop(error="SoakTimeout", cause="the soak gave up waiting")
                    execution.wait(10, raise_on_runtime_error=False)
                outcomes.append(outcome)
                violations.extend(outcome.violations)
                if progress and len(outcomes) % 100 == 0:
                    print(f"  ... {len(outcomes)}/{len(plans)} runs, {time.monotonic() - t0:.0f} s", flush=True)
            if not finished:
                time.sleep(cfg.poll_interval)
        # Final sweep, after every run ended: nothing came back late.
        time.sleep(0.2)
        for job in engine.batch.all_jobs():
            if not job.done():
                violations.append(f"[non-terminal] Batch job {job.job_name} still {job.status}")
        for execution in engine.list_executions():
            if not execution.done():
                violations.append(f"[non-terminal] {execution.name}: {execution.status} at the end")
        complete = {o.run_id for o in outcomes if o.status == "SUCCEEDED"}
        late_scratch = leftover_scratch(estate.scratch, {o.run_id for o in outcomes
                                                         if o.status == "SUCCEEDED" and o.outcome == "succeeded"})
        if late_scratch:
            violations.append(f"[cleanup] scratch not cleaned at the end: {late_scratch[:5]}")
        stray = sorted(p.name for p in estate.outputs.iterdir() if p.name not in complete
                       and ("manifest.json" not in (found := _listing(s3, str(p))) and unpublished_leftovers(found)))
        if stray:
            violations.append(f"[partial-output] under the local output root at the end: {stray[:5]}")
        s3_runs = {k.split("/", 1)[0] for k in _s3_keys(s3, "s3://" + S3_BUCKET + "/runs/")}
        s3_runs = {r for r in s3_runs if r not in complete and "manifest.json" not in
                   (found := _listing(s3, f"s3://{S3_BUCKET}/runs/{r}")) and unpublished_leftovers(found)}
        if s3_runs:
            violations.append(f"[partial-output] under {S3_PREFIX} at the end: {sorted(s3_runs)[:5]}")
        violations.extend(check_cache(estate.cache, observed))
        # The step decides its own faults from the same seed: the logs must agree with the count.
        in_logs = Counter()
        for log in estate.logs.glob("*.log"):
            text = log.read_text(errors="replace")
            in_logs["midway_crash"] += text.count("crashing midway (injected)")
            in_logs["oom"] += text.count("out of memory (injected)")
        for kind in ("midway_crash", "oom"):
            if in_logs[kind] != injector.counts[kind]:
                violations.append(f"[harness] {kind}: {injector.counts[kind]} counted, {in_logs[kind]} in job logs")
    wall = time.monotonic() - t0

    statuses = Counter(o.status for o in outcomes)
    failed = Counter(o.reason for o in outcomes if o.status == "FAILED")
    retries = Counter()
    for o in outcomes:
        retries["batch_attempt_retries"] += o.batch_attempt_retries
        retries["batch_submit_retries"] += o.batch_submit_retries
        retries["lambda_retries"] += o.lambda_retries
    observed.update(injector.observed)
    observed["bulk_runs"] = sum(1 for p in plans if len(p.targets) > 3)
    observed["targets"] = sum(len(p.targets) for p in plans)
    observed["s3_output_runs"] = sum(1 for p in plans if p.output_root.startswith("s3://"))
    observed["batch_jobs"] = len(engine.batch.all_jobs())
    for o in outcomes:  # per-target outcomes, from the manifests
        if o.outcome:
            observed[f"outcome_{o.outcome}"] += 1
        observed["targets_published"] += o.published
        for code in o.failure_codes:
            observed[f"targets_failed_{code}"] += 1
    for job in engine.batch.all_jobs():  # e.g. on-demand fallbacks, OOM escalations
        observed[f"jobs_on_{job.info.queue}"] += 1
    known = Counter(b for o in outcomes for b in o.known_bugs)
    return SoakReport(asdict(cfg), wall, len(outcomes), statuses, failed, Counter(injector.counts), retries,
                      observed, known, violations, sorted(outcomes, key=lambda o: o.index))


def check_cache(cache_root: Path, observed: Counter) -> list[str]:
    """Every MSA cache entry with its marker holds exactly the files the marker records
    (an entry is reused by later runs: a damaged one would spread)."""
    v: list[str] = []
    for marker_path in sorted(cache_root.rglob("cache.json")):
        observed["msa_cache_entries"] += 1
        marker = json.loads(marker_path.read_text())
        for name, digest in marker.get("files", {}).items():
            f = marker_path.parent / name
            if not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != digest:
                v.append(f"[lost-output] MSA cache entry {marker_path.parent}: {name} does not match cache.json")
    observed["msa_cache_orphan_temp_files"] = sum(1 for p in cache_root.rglob("*.tmp"))
    return v
