"""Where runs actually go: the deployed environment (`CloudBackend`, boto3 through
`AwsApi`) or this machine (`LocalBackend`, the local engine through `LocalRunner`).
`Run`/`Client` only talk to this small interface, so both modes share one API."""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from foldstack import storage
from foldstack.client.attempts import Attempts, name_of
from foldstack.client.aws import AwsApi
from foldstack.client.config import DEFAULT_WORKFLOW, ClientConfig
from foldstack.client.errors import AwsError, RunNotFoundError
from foldstack.client.workloads import WorkloadRequest, execution_input
from foldstack.core.errors import InputValidationError
from foldstack.core.request import InlineRecord, RunRequest
from foldstack.core.runid import parse_execution_name
from foldstack.core.targets import Target
from foldstack.core.uris import join_under, parse_uri
from foldstack.tasks.validate import validate_run

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
INLINE_LIMIT = 100_000  # bytes of inline records kept in the execution input (256 KB state limit)


@dataclass
class ExecutionInfo:
    run_id: str
    status: str
    start: datetime | None = None
    stop: datetime | None = None
    error: str | None = None
    cause: str | None = None
    request: dict[str, Any] | None = None
    output: Any = None
    arn: str | None = None
    attempt: int = 1  # which execution of the run this is (1, then retries and reruns)
    execution_name: str | None = None  # <run_id>, then <run_id>-a<attempt>
    workflow: str | None = None  # the registered workflow that runs it (fold, cryoem, ...)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "status": self.status,
            "start": self.start.isoformat() if self.start else None,
            "stop": self.stop.isoformat() if self.stop else None,
            "error": self.error, "cause": self.cause, "attempt": self.attempt,
            "execution_name": self.execution_name or self.run_id, "workflow": self.workflow,
        }


@dataclass
class Prepared:
    request: Any  # RunRequest (fold) or the workload's own request model
    run_id: str
    targets: list[Target]
    uploads: dict[str, bytes] = field(default_factory=dict)  # URI -> content, written by `upload`
    workflow: str = DEFAULT_WORKFLOW
    files: dict[str, Path] = field(default_factory=dict)  # URI -> local file, streamed by `upload`

    def execution_input(self) -> str:
        """The execution's input. Fold's is unchanged ({run_id, request}: what every deployed
        fold machine reads); another workflow's also names the workflow."""
        if self.workflow == DEFAULT_WORKFLOW:
            return json.dumps({"run_id": self.run_id, "request": self.request.model_dump(mode="json")},
                              sort_keys=True, separators=(",", ":"))
        return execution_input(WorkloadRequest(self.workflow, self.request, self.run_id, self.files))


class Backend(Protocol):
    name: str

    def default_output(self) -> str: ...
    def prepare(self, request: RunRequest, *, inline_as_file: bool = False) -> Prepared: ...
    def prepare_workload(self, workflow: str, request: Any, *, fields: Mapping[str, Any] | None = None,
                         base: Path | None = None) -> Prepared: ...  # another registered workflow's request
    def upload(self, prepared: Prepared) -> None: ...
    def start(self, prepared: Prepared, *, rerun: bool = False) -> bool: ...  # True if the run already existed
    def retry(self, run_id: str) -> bool: ...  # the next attempt; True if it already existed
    def describe(self, run_id: str) -> ExecutionInfo: ...
    def history(self, run_id: str) -> list[dict[str, Any]]: ...
    def stop(self, run_id: str, cause: str) -> None: ...
    def list_runs(self, status: str | None, since: datetime | None) -> Iterator[ExecutionInfo]: ...
    def log_lines(self, run_id: str, job_id: str) -> list[str]: ...
    def read(self, uri: str) -> bytes | None: ...
    def missing_db_versions(self, pins: Mapping[str, str]) -> tuple[dict[str, str], str]: ...
    def download(self, uri: str, path: Path) -> None: ...


def fasta_of(records: list[InlineRecord]) -> bytes:
    return "".join(f">{r.id}\n{r.sequence}\n" for r in records).encode()


def content_uri(prefix: str, data: bytes, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".") or "input.fasta"
    return join_under(prefix, hashlib.sha256(data).hexdigest()[:16], safe[:120])


# --------------------------------------------------------------------------- cloud


class CloudBackend:
    def __init__(self, api: AwsApi, config: ClientConfig) -> None:
        self.api, self.config, self.name = api, config, config.env
        self.page_size = 1000  # ListExecutions maxResults (the API's maximum)
        self._history_cache: dict[str, list[dict[str, Any]]] = {}  # by execution ARN
        self.attempts = Attempts(api, config)  # fold's
        self._attempts: dict[str, Attempts] = {DEFAULT_WORKFLOW: self.attempts}
        self._arns: dict[str, str] = {}  # run id -> ARN of its latest attempt, as last described
        self._workflows: dict[str, str] = {}  # run id -> the workflow whose machine runs it

    def attempts_of(self, workflow: str) -> Attempts:
        self.config.state_machine_for(workflow)  # not deployed here: a one-line error naming those that are
        if workflow not in self._attempts:
            self._attempts[workflow] = Attempts(self.api, self.config, workflow)
        return self._attempts[workflow]

    def _latest(self, run_id: str) -> tuple[str, int, dict[str, Any]] | None:
        """(workflow, attempt, DescribeExecution) of the run's latest attempt. A run not seen
        before is looked for in fold's state machine first, then in every other deployed
        one (an execution name is unique per machine only, a run id across them)."""
        known = self._workflows.get(run_id)
        order = [known] if known else list(self.config.deployed_workflows)
        for workflow in order:
            latest = self.attempts_of(workflow).latest(run_id)
            if latest is not None:
                self._workflows[run_id] = workflow
                return workflow, *latest
        return None

    def workflow_of(self, run_id: str) -> str:
        """The workflow a run belongs to (looked up once)."""
        if run_id not in self._workflows:
            self.describe(run_id)
        return self._workflows[run_id]

    def default_output(self) -> str:
        return self.config.output_prefix

    # -- submission
    def prepare(self, request: RunRequest, *, inline_as_file: bool = False) -> Prepared:
        """Map local files to their upload URIs and validate exactly as Validate Input
        will; nothing is written. Local bytes are served to the validator from memory."""
        limits = self.config.fasta_limits
        uploads: dict[str, bytes] = {}
        inputs: list[str | InlineRecord] = []
        inline = [i for i in request.inputs if isinstance(i, InlineRecord)]
        big_inline = bool(inline) and (inline_as_file or len(fasta_of(inline)) > INLINE_LIMIT)
        for item in request.inputs:
            if isinstance(item, InlineRecord):
                if not big_inline:
                    inputs.append(item)
                continue
            if item.startswith("s3://"):
                inputs.append(item)
                continue
            path = Path(item.removeprefix("file://")).expanduser()
            if not path.is_file():
                raise InputValidationError(f"input file {str(path)!r} does not exist", code="missing_input",
                                           source=str(path))
            if path.stat().st_size > limits.max_bytes:
                raise InputValidationError(
                    f"file is {path.stat().st_size} bytes; the maximum is {limits.max_bytes}",
                    code="too_large", source=str(path), hint="split it into several requests",
                )
            data = path.read_bytes()
            uri = content_uri(self.config.input_prefix, data, path.name)
            uploads[uri] = data
            inputs.append(uri)
        if big_inline:
            data = fasta_of(inline)
            uri = content_uri(self.config.input_prefix, data, "inline.fasta")
            uploads[uri] = data
            inputs.append(uri)
        request = request.model_copy(update={"inputs": tuple(inputs)})

        def reader(uri: str, max_bytes: int) -> bytes:
            if uri in uploads:
                return uploads[uri]
            u = parse_uri(uri)
            try:
                body = self.api.call("s3", "get_object", Bucket=u.bucket, Key=u.key, Range=f"bytes=0-{max_bytes}")
            except AwsError as exc:
                if exc.aws_code == "InvalidRange":
                    return b""  # a Range on an empty object: the object is empty
                raise
            data = body["Body"].read()
            if len(data) > max_bytes:
                raise InputValidationError(f"file is larger than {max_bytes} bytes", code="too_large", source=uri)
            return data

        request, _records, targets, run_id = validate_run(
            request, allowed_input_prefixes=self.config.allowed_input_prefixes,
            allowed_output_prefixes=self.config.output_prefixes, size_classes=self.config.size_classes,
            limits=limits, reader=reader,
        )
        return Prepared(request, run_id, targets, uploads)

    def prepare_workload(self, workflow: str, request: Any, *, fields: Mapping[str, Any] | None = None,
                         base: Path | None = None) -> Prepared:
        """A request of another registered workload (`foldstack.client.workloads`): checked
        offline, its local files mapped to upload URIs; nothing is written."""
        from foldstack.client.workloads import prepare

        self.config.state_machine_for(workflow)  # deployed here, before any file is hashed
        ready = prepare(workflow, request, fields=fields, base=base, input_prefix=self.config.input_prefix,
                        allowed_input_prefixes=self.config.allowed_input_prefixes,
                        output_prefixes=self.config.output_prefixes, default_output=self.default_output())
        return Prepared(ready.request, ready.run_id, [], workflow=workflow, files=ready.files)

    def upload(self, prepared: Prepared) -> None:
        for uri, data in prepared.uploads.items():  # content-addressed: re-uploading is harmless
            u = parse_uri(uri)
            self.api.call("s3", "put_object", Bucket=u.bucket, Key=u.key, Body=data,
                          ContentType="text/x-fasta",
                          Metadata={"sha256": hashlib.sha256(data).hexdigest()})
        for uri, path in prepared.files.items():  # streamed from disk (movies are large)
            u = parse_uri(uri)
            with path.open("rb") as body:
                self.api.call("s3", "put_object", Bucket=u.bucket, Key=u.key, Body=body)

    def start(self, prepared: Prepared, *, rerun: bool = False) -> bool:
        """Start the run's execution; True if it already existed. Step Functions answers a
        StartExecution with the same name *and the same input* while that execution is
        still running with success (the existing execution), not ExecutionAlreadyExists,
        so the run's executions are looked up first. `rerun`: the run's finished work is
        discarded and its results withdrawn, then its next attempt starts."""
        body = prepared.execution_input()
        attempts = self.attempts_of(prepared.workflow)
        self._workflows[prepared.run_id] = prepared.workflow
        if not rerun:
            if attempts.latest(prepared.run_id) is not None:
                return True
            return self._start(prepared.run_id, 1, body)
        attempt, latest = attempts.next_attempt(prepared.run_id, retry=False)
        if latest is not None:
            attempts.discard(prepared.run_id, prepared.request.output_uri)
        return self._start(prepared.run_id, attempt, body)

    def retry(self, run_id: str) -> bool:
        """Start the next attempt of a FAILED, ABORTED or TIMED_OUT run with the same input:
        its steps skip the targets the earlier attempts finished."""
        if run_id not in self._workflows and self._latest(run_id) is None:
            raise RunNotFoundError(f"no run {run_id!r} in environment {self.name!r}", run_id=run_id)
        attempt, latest = self.attempts_of(self._workflows[run_id]).next_attempt(run_id, retry=True)
        assert latest is not None
        return self._start(run_id, attempt, latest["input"])

    def _start(self, run_id: str, attempt: int, body: str) -> bool:
        workflow = self._workflows.get(run_id, DEFAULT_WORKFLOW)
        existed = self.attempts_of(workflow).start(run_id, attempt, body)
        self._arns[run_id] = self.config.execution_arn(name_of(run_id, attempt), workflow)  # history follows it
        return existed

    # -- inspection
    def describe(self, run_id: str) -> ExecutionInfo:
        """The run's latest attempt."""
        latest = self._latest(run_id)
        if latest is None:
            raise RunNotFoundError(f"no run {run_id!r} in environment {self.name!r}", run_id=run_id)
        workflow, attempt, d = latest
        self._arns[run_id] = d["executionArn"]
        data = _loads(d.get("input"))
        return ExecutionInfo(
            run_id=run_id, status=d["status"], start=d.get("startDate"), stop=d.get("stopDate"),
            error=d.get("error"), cause=d.get("cause"),
            request=data.get("request") if isinstance(data, Mapping) else None,
            output=_loads(d.get("output")), arn=d.get("executionArn"), attempt=attempt,
            execution_name=d.get("name"), workflow=workflow,
        )

    def _arn(self, run_id: str) -> str:
        return self._arns.get(run_id) or self.describe(run_id).arn or \
            self.config.execution_arn(run_id, self._workflows.get(run_id))

    def history(self, run_id: str) -> list[dict[str, Any]]:
        """The history of the run's latest attempt (as last described)."""
        arn = self._arn(run_id)
        if arn in self._history_cache:
            return self._history_cache[arn]
        events = list(self.api.paginate(
            "stepfunctions", "get_execution_history", "events",
            executionArn=arn, maxResults=1000, includeExecutionData=True,
        ))
        if events and events[-1].get("type", "").startswith("Execution") and \
                events[-1]["type"] != "ExecutionStarted":
            self._history_cache[arn] = events  # terminal: history can no longer change
        return events

    def stop(self, run_id: str, cause: str) -> None:
        arn = self.describe(run_id).arn or self.config.execution_arn(run_id, self._workflows.get(run_id))
        self.api.call("stepfunctions", "stop_execution", executionArn=arn, error="Cancelled", cause=cause[:32768])

    def list_runs(self, status: str | None, since: datetime | None) -> Iterator[ExecutionInfo]:
        """One row per run of every deployed workflow: its latest attempt, newest first
        (each machine's listing is newest first; they are merged)."""
        streams = [self._list_runs(workflow, status, since) for workflow in self.config.deployed_workflows]
        if len(streams) == 1:
            yield from streams[0]
            return
        yield from heapq.merge(*streams, key=lambda i: as_aware(i.start or datetime.min), reverse=True)

    def _list_runs(self, workflow: str, status: str | None, since: datetime | None) -> Iterator[ExecutionInfo]:
        """One workflow's runs. Only RUNNING is filtered by the API: an older attempt may
        have any other status while a later one differs."""
        params: dict[str, Any] = {"stateMachineArn": self.config.state_machine_for(workflow),
                                  "maxResults": self.page_size}
        if status == "RUNNING":
            params["statusFilter"] = status
        seen: set[str] = set()
        for e in self.api.paginate("stepfunctions", "list_executions", "executions", **params):
            start = e.get("startDate")
            if since is not None and start is not None and as_aware(start) < as_aware(since):
                return  # newest first: everything after this is older
            run_id, attempt = parse_execution_name(e["name"])
            if run_id in seen:
                continue  # an earlier attempt of a run already listed
            seen.add(run_id)
            if status and e["status"] != status:
                continue
            self._workflows.setdefault(run_id, workflow)
            yield ExecutionInfo(run_id=run_id, status=e["status"], start=start, stop=e.get("stopDate"),
                                arn=e.get("executionArn"), attempt=attempt, execution_name=e["name"],
                                workflow=workflow)

    def log_location(self, stream: str) -> str:
        """Where a Batch job's log stream is, for people: the CloudWatch group and stream."""
        return f"CloudWatch Logs {self.config.log_group_batch} {stream} ({self.config.region})"

    def log_lines(self, run_id: str, job_id: str) -> list[str]:
        jobs = self.api.call("batch", "describe_jobs", jobs=[job_id]).get("jobs", [])
        if not jobs:
            raise RunNotFoundError(f"Batch job {job_id} not found (Batch keeps finished jobs ~7 days)")
        job = jobs[0]
        streams = [a.get("container", {}).get("logStreamName") for a in job.get("attempts", [])]
        streams.append(job.get("container", {}).get("logStreamName"))
        lines: list[str] = []
        for stream in dict.fromkeys(s for s in streams if s):
            lines.append(f"==> {stream} <==")
            for ev in self.api.paginate("logs", "get_log_events", "events", cursor_in="nextToken",
                                        cursor_out="nextForwardToken", logGroupName=self.config.log_group_batch,
                                        logStreamName=stream, startFromHead=True):
                lines.append(ev.get("message", "").rstrip("\n"))
        return lines

    # -- storage
    def read(self, uri: str) -> bytes | None:
        from botocore.exceptions import ClientError

        u = parse_uri(uri)
        try:
            return self.api.call("s3", "get_object", allow=("NoSuchKey", "404"), Bucket=u.bucket,
                                 Key=u.key)["Body"].read()
        except ClientError:
            return None

    def download(self, uri: str, path: Path) -> None:
        u = parse_uri(uri)
        body = self.api.call("s3", "get_object", Bucket=u.bucket, Key=u.key)["Body"]
        write_stream(path, iter(lambda: body.read(1 << 20), b""))

    def missing_db_versions(self, pins: Mapping[str, str]) -> tuple[dict[str, str], str]:
        """({name: version} of `pins` not published under the database prefix, that prefix):
        a version is there when ``<db_uri>/<name>/<version>/manifest.json`` is (the refresh
        publishes it after every file). The jobs' database file systems import that prefix."""
        from botocore.exceptions import ClientError

        from foldstack.core.errors import ConfigurationError

        if not pins:
            return {}, self.config.db_uri or ""
        if not self.config.db_uri:
            raise ConfigurationError(f"environment {self.name!r} publishes no db_uri parameter: cannot check the "
                                     "pinned database versions", env=self.name)
        missing = {}
        for name, version in pins.items():
            u = parse_uri(join_under(self.config.db_uri, name, version, "manifest.json"))
            try:
                self.api.call("s3", "head_object", allow=("404", "NoSuchKey", "NotFound"), Bucket=u.bucket, Key=u.key)
            except ClientError:
                missing[name] = version
        return missing, self.config.db_uri


# --------------------------------------------------------------------------- helpers


def write_stream(path: Path, chunks: Iterator[bytes] | Callable[[], Iterator[bytes]]) -> None:
    storage.write_stream(path, chunks)  # type: ignore[arg-type]  # atomic: temp file beside it, fsync, replace


def _loads(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def as_aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)
