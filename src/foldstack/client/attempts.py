"""A run's attempts in the cloud: finding the latest, starting the next, and forgetting
finished work before a rerun.

Every execution of a run carries the same run id in its input (scratch and results are
named by it); attempt 1 is the execution named by the run id, attempt N >= 2 the one named
``<run_id>-a<N>`` (:func:`foldstack.core.runid.execution_name`). ListExecutions cannot
filter by name, so the latest attempt is found by DescribeExecution on the next candidate
name until one does not exist; the highest attempt seen is remembered, and while an
attempt runs no later one can exist (retry and rerun refuse to start beside it), so
following a running run costs one call a poll. Every call goes through `AwsApi`.
"""

from __future__ import annotations

from typing import Any

from foldstack.client.aws import AwsApi
from foldstack.client.config import ClientConfig
from foldstack.client.errors import RunStateError
from foldstack.core.manifest import execution_outcome
from foldstack.core.runid import ATTEMPT_MAX, execution_name
from foldstack.core.uris import join_under, parse_uri

RETRYABLE = frozenset({"FAILED", "ABORTED", "TIMED_OUT"})  # and a SUCCEEDED run with outcome partial


def name_of(run_id: str, attempt: int) -> str:
    """Attempt 1 is named by the run id as given (so an id of another shape is still
    looked up as before); later attempts by the naming rule."""
    return run_id if attempt == 1 else execution_name(run_id, attempt)


class Attempts:
    """The attempts of runs of one workflow (its state machine; default fold)."""

    def __init__(self, api: AwsApi, config: ClientConfig, workflow: str | None = None) -> None:
        self.api, self.config, self.workflow = api, config, workflow
        self._highest: dict[str, int] = {}  # run id -> highest attempt seen

    def describe(self, run_id: str, attempt: int) -> dict[str, Any] | None:
        """DescribeExecution of one attempt, or None if it does not exist."""
        from botocore.exceptions import ClientError

        try:
            name = name_of(run_id, attempt)
        except ValueError:  # an id that cannot take attempts has only its first
            return None
        try:
            return self.api.call("stepfunctions", "describe_execution", allow=("ExecutionDoesNotExist",),
                                 executionArn=self.config.execution_arn(name, self.workflow))
        except ClientError:
            return None

    def latest(self, run_id: str) -> tuple[int, dict[str, Any]] | None:
        """(attempt, DescribeExecution) of the run's latest attempt, or None (no run)."""
        attempt = self._highest.get(run_id, 1)
        found = self.describe(run_id, attempt)
        if found is None and attempt > 1:  # (forgotten by Step Functions after 90 days)
            attempt, found = 1, self.describe(run_id, 1)
        if found is None:
            return None
        while found["status"] != "RUNNING" and attempt < ATTEMPT_MAX:
            later = self.describe(run_id, attempt + 1)
            if later is None:
                break
            attempt, found = attempt + 1, later
        self._highest[run_id] = attempt
        return attempt, found

    def start(self, run_id: str, attempt: int, body: str) -> bool:
        """StartExecution of `attempt`; True if it existed already (a concurrent start)."""
        from botocore.exceptions import ClientError

        try:
            self.api.call("stepfunctions", "start_execution", allow=("ExecutionAlreadyExists",),
                          stateMachineArn=self.config.state_machine_for(self.workflow), name=name_of(run_id, attempt),
                          input=body)
            existed = False
        except ClientError:  # same name: that attempt exists; return it (idempotent)
            existed = True
        self._highest[run_id] = max(attempt, self._highest.get(run_id, 1))
        return existed

    def next_attempt(self, run_id: str, *, retry: bool) -> tuple[int, dict[str, Any] | None]:
        """(the attempt to start, the latest one's description) for a retry or a rerun;
        RunStateError while an attempt runs, or (retry) after a success."""
        from foldstack.client.errors import RunNotFoundError

        latest = self.latest(run_id)
        if latest is None:
            if retry:
                raise RunNotFoundError(f"no run {run_id!r} in environment {self.config.env!r}", run_id=run_id)
            return 1, None
        attempt, found = latest
        status = found["status"]
        if status == "RUNNING":
            raise RunStateError(f"run {run_id} is running (attempt {attempt}): wait for it or cancel it first",
                                code="run_running", run_id=run_id, status=status)
        if retry and status not in RETRYABLE and execution_outcome(found.get("output")) != "partial":
            raise RunStateError(f"run {run_id} is {status}: there is nothing to retry", code="nothing_to_retry",
                                run_id=run_id, status=status,
                                hint="submit it with --rerun to compute it again")
        return attempt + 1, found

    # -- a rerun forgets what earlier attempts finished
    def discard(self, run_id: str, output_uri: str) -> dict[str, int]:
        """Delete the run's scratch (``s3://<scratch_bucket>/<run_id>/``: finished targets
        kept by a failed attempt) and withdraw its published results
        (``<output_uri>/<run_id>/``, ``manifest.json`` first), so the next attempt
        recomputes and republishes every target."""
        scratch = self._delete_prefix(f"s3://{self.config.scratch_bucket}/{run_id}/")
        results = join_under(output_uri, run_id)
        manifest = parse_uri(join_under(results, "manifest.json"))
        withdrawn = 0
        if manifest.is_s3:
            self.api.call("s3", "delete_object", Bucket=manifest.bucket, Key=manifest.key)
            withdrawn = self._delete_prefix(results + "/")
        return {"scratch_deleted": scratch, "results_withdrawn": withdrawn}

    def _delete_prefix(self, uri: str) -> int:
        u = parse_uri(uri)
        keys = [o["Key"] for o in self.api.paginate("s3", "list_objects_v2", "Contents", cursor_in="ContinuationToken",
                                                     cursor_out="NextContinuationToken", Bucket=u.bucket, Prefix=u.key)]
        for i in range(0, len(keys), 1000):
            self.api.call("s3", "delete_objects", Bucket=u.bucket,
                          Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
        return len(keys)
