"""Per-step state of a run from its Step Functions execution history.

Works on AWS-shaped history events (GetExecutionHistory: `id`, `previousEventId`,
`type`, `<kind>EventDetails`). Events inside a (possibly nested) Map iteration are
attributed to it by following `previousEventId` back to its `MapIterationStarted`, whose
own chain gives the enclosing iteration; local-engine events carry their Map path
directly (`_map_path`). An iteration's targets are read from the input of its first
state: one `target` (per-target MSA iterations) or a `batch` of targets (one Predict job
for several targets, so its step is recorded once per target, with the same job id).

A Batch task's step is what its job runs, from the job definition it submits and the
run's workflow's jobs.yaml (`foldstack.client.stepnames`: `msa`, `predict`; cryoem's
`preprocess`, `curate`, `class2d`, `refine3d`, ...), with the job definition's size
class. Without jobs.yaml, and for Lambda tasks, the step is the state's name family:
`Predict_<size class>` -> step `predict` on that size class, `ValidateInput` ->
`validateinput`; the Distributed Map's copies carry a `Bulk` prefix. Batch job ids come
from TaskSubmitted/TaskSucceeded outputs and TaskFailed causes (`JobId`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from foldstack.client.stepnames import StepNames

_JOB_ID = re.compile(r'"JobId"\s*:\s*"([^"]+)"')


@dataclass
class StepState:
    step: str  # msa | predict | preprocess | ... (what a Batch job runs) | validateinput | ... (state family)
    state: str  # the ASL state name, e.g. Predict_small
    target: str | None = None  # None for run-level states (ValidateInput, CollectOutputs, ...)
    size_class: str | None = None
    status: str = "RUNNING"  # RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    job_id: str | None = None
    attempts: int = 0  # task attempts Step Functions made (Batch retries are inside one)
    started: datetime | None = None
    stopped: datetime | None = None
    error: str | None = None
    cause: str | None = None
    job: str | None = None  # the jobs.yaml job a Batch task submitted (msa, predict, cryoem_gpu, ...)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("started", "stopped"):
            d[k] = d[k].isoformat() if d[k] else None
        return d


@dataclass
class StepSummary:
    """One target-level step (msa, predict, ...) across the run's targets."""

    step: str
    done: int = 0
    running: int = 0
    failed: int = 0  # FAILED, TIMED_OUT or ABORTED
    started: datetime | None = None  # the first target's start
    stopped: datetime | None = None  # the last target's end; None while any target runs
    per_target: bool = True  # False: a run-level Batch step (one job for the run, e.g. cryoem's refine3d)


@dataclass
class Progress:
    steps: list[StepState] = field(default_factory=list)
    current_state: str | None = None  # last top-level state entered
    n_targets: int | None = None  # from Validate Input's result, once it has run

    def summary(self) -> list[StepSummary]:
        """Per target-level step, in the order the run reached them: how many targets
        are done, running and failed there (each target counted once per step, by its
        latest attempt: a Predict retried on a larger size class counts once). A Batch
        step of the run as a whole (no target) is a row too, counted once."""
        latest: dict[tuple[str, str | None], StepState] = {}
        records: dict[str, list[StepState]] = {}
        run_level: set[str] = set()
        for s in self.steps:
            if s.target is None:
                if s.job is None:
                    continue  # a Lambda task of the run (ValidateInput, ...): not a row
                run_level.add(s.step)
            latest[(s.step, s.target)] = s
            records.setdefault(s.step, []).append(s)
        out = []
        for step, states in records.items():
            row = StepSummary(step, per_target=step not in run_level)
            for (name, _target), s in latest.items():
                if name != step:
                    continue
                if s.status == "SUCCEEDED":
                    row.done += 1
                elif s.status == "RUNNING":
                    row.running += 1
                else:
                    row.failed += 1
            starts = [s.started for s in states if s.started is not None]
            stops = [s.stopped for s in states if s.stopped is not None]
            row.started = min(starts) if starts else None
            row.stopped = max(stops) if stops and not row.running else None
            out.append(row)
        return out

    def for_target(self, target: str) -> list[StepState]:
        return [s for s in self.steps if s.target == target]

    def find(self, step: str, target: str | None) -> StepState | None:
        """The latest attempt record of `step` ("msa", "predict", or a state name) for `target`."""
        key = step.lower()
        found = [s for s in self.steps if (s.step == key or s.state.lower() == key) and s.target == target]
        return found[-1] if found else None

    def targets(self) -> dict[str, StepState]:
        """Each target's most recent step."""
        latest: dict[str, StepState] = {}
        for s in self.steps:
            if s.target is not None:
                latest[s.target] = s
        return latest

    def counts(self) -> dict[str, int]:
        """'<step> <status>' -> number of targets there now (for progress displays)."""
        out: dict[str, int] = {}
        for s in self.targets().values():
            key = f"{s.step} {s.status.lower()}"
            out[key] = out.get(key, 0) + 1
        return out


def details_key(event_type: str) -> str:
    if event_type.endswith("StateEntered"):
        return "stateEnteredEventDetails"
    if event_type.endswith("StateExited"):
        return "stateExitedEventDetails"
    return event_type[0].lower() + event_type[1:] + "EventDetails"


def details_of(event: Mapping[str, Any]) -> dict[str, Any]:
    return dict(event.get(details_key(str(event.get("type", "")))) or {})


def from_engine(events: Iterable[Any]) -> list[dict[str, Any]]:
    """Local-engine HistoryEvents (objects or dicts) -> AWS-shaped events (+ `_map_path`)."""
    out = []
    for e in events:
        get = (lambda k, e=e: e.get(k)) if isinstance(e, Mapping) else (lambda k, e=e: getattr(e, k, None))
        etype = str(get("type"))
        details = get("details")
        if details is None and isinstance(e, Mapping):  # a run record's summary of an event
            details = {k: v for k, v in (("error", e.get("error")), ("cause", e.get("cause"))) if v}
            if e.get("state") and "State" in etype:
                details["name"] = e["state"]
        event = {
            "id": get("id"), "previousEventId": get("previous_id"), "type": etype,
            "timestamp": get("timestamp"), details_key(etype): dict(details or {}),
        }
        if isinstance(e, Mapping) and e.get("target"):
            event["_target"] = e["target"]
        path = get("map_path")
        if path is not None:
            event["_map_path"] = tuple(path)
        out.append(event)
    return out


def json_field(text: Any) -> Any:
    """A history field that holds JSON (input, output, cause), decoded; a value that is not
    a string (the local engine's events may carry objects) as it is; bad JSON: None."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None


def _job_id(text: Any) -> str | None:
    data = json_field(text)
    if isinstance(data, Mapping):
        for key in ("JobId", "jobId", "job_id"):
            if isinstance(data.get(key), str):
                return data[key]
    if isinstance(text, str):
        m = _JOB_ID.search(text)
        return m.group(1) if m else None
    return None


def _timestamp(value: Any) -> datetime | None:
    """A datetime (AWS, the live local engine) or ISO text (a recorded local run)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


# Lambda tasks of a batch that are no step of its targets (Publish Batch publishes what the
# steps made): recorded as run-level steps (target None), like ValidateInput.
BATCH_TASKS = frozenset({"publishbatch"})


def _step_of(state: str) -> tuple[str, str | None]:
    family, _, rest = state.removeprefix("Bulk").partition("_")
    return family.lower(), (rest or None)


IterationKey = tuple[int, ...]  # Map iteration indices, outermost first; () outside any Map


# A Map's end events chain back (previousEventId) to its last iteration's events.
_MAP_ENDS = ("MapStateSucceeded", "MapStateFailed", "MapStateAborted", "MapStateExited")


def _iteration_key(ev: Mapping[str, Any], etype: str, d: Mapping[str, Any],
                   iteration: Mapping[int, IterationKey], open_maps: list[IterationKey]) -> IterationKey:
    """Which (possibly nested) Map iteration an event belongs to. `open_maps` holds the
    scopes of the Map states running now: a Map's end event chains back to one of its
    iterations, but belongs to the scope the Map itself runs in."""
    if "_map_path" in ev:  # local engine: the path is on the event
        return tuple(int(i) for i in ev["_map_path"])
    parent = iteration.get(int(ev.get("previousEventId") or 0), ())
    if etype == "MapIterationStarted":  # a new iteration inside its Map's scope
        return (*parent, int(d.get("index", -1)))
    if etype == "MapStateStarted":
        open_maps.append(parent)
        return parent
    if etype in _MAP_ENDS:
        scopes = [s for s in open_maps if parent[: len(s)] == s]
        if scopes:
            scope = max(scopes, key=len)
            if etype == "MapStateExited":
                open_maps.remove(scope)
            return scope
    if etype.startswith("Execution"):
        return ()
    return parent


def _members(item: Any, validated: list[dict[str, Any]], index: int) -> list[tuple[str, str | None]]:
    """(target id, size class) of the targets an iteration works on: one per-target
    iteration (`target`), or a batch of targets (`batch.targets`)."""
    if isinstance(item, Mapping):
        target = item.get("target")
        if isinstance(target, Mapping) and "id" in target:
            return [(str(target["id"]), target.get("size_class"))]
        batch = item.get("batch")
        if isinstance(batch, Mapping):
            members = [(str(t.get("id")), t.get("size_class") or batch.get("size_class"))
                       for t in batch.get("targets") or [] if isinstance(t, Mapping)]
            # a batch of something other than targets (cryoem: movies) is named by its own id
            label = next((batch[k] for k in ("batch", "id", "name") if isinstance(batch.get(k), str | int)), None)
            if not members and label is not None and not isinstance(label, bool):
                return [(str(label), batch.get("size_class"))]
            return members
        if isinstance(batch, str | int) and not isinstance(batch, bool):  # {"batch": "b00000", ...}
            return [(str(batch), item.get("size_class"))]
    if 0 <= index < len(validated):  # older definitions: iteration i is target i
        t = validated[index]
        return [(str(t.get("id")), t.get("size_class"))]
    return []


def parse(events: Iterable[Mapping[str, Any]], names: StepNames | None = None) -> Progress:
    """The run's steps from its history; `names`: its workflow's job names (Batch steps
    named by what their jobs run; None: by state name)."""
    ordered = sorted(events, key=lambda e: int(e.get("id") or 0))
    iteration: dict[int, IterationKey] = {}
    open_maps: list[IterationKey] = []
    members: dict[IterationKey, list[tuple[str, str | None]]] = {}
    validated: list[dict[str, Any]] = []
    # (iteration, state name) -> the step records that task opened: one per target it
    # works on (a batched Predict job serves several targets).
    open_steps: dict[tuple[IterationKey, str], list[StepState]] = {}
    progress = Progress()

    for ev in ordered:
        eid, etype = int(ev.get("id") or 0), str(ev.get("type", ""))
        d = details_of(ev)
        ts = _timestamp(ev.get("timestamp"))
        key = _iteration_key(ev, etype, d, iteration, open_maps)
        iteration[eid] = key
        if etype == "MapStateStarted":  # a later Map in the same scope reuses iteration indices
            for stale in [k for k in members if len(k) > len(key) and k[:len(key)] == key]:
                del members[stale]
        if key and ev.get("_target") and key not in members:  # a batch's events name its ids joined by ','
            members[key] = [(t, None) for t in str(ev["_target"]).split(",") if t]

        if etype.endswith("StateEntered"):
            name = str(d.get("name", ""))
            if not key:
                progress.current_state = name
            elif key not in members:
                members[key] = _members(json_field(d.get("input")), validated, key[-1])
            if etype == "TaskStateEntered":
                step, size = _step_of(name)
                targets = members.get(key) or [(None, None)] if key and step not in BATCH_TASKS else [(None, None)]
                opened = [StepState(step=step, state=name, target=t, size_class=size or sc, started=ts)
                          for t, sc in targets]
                open_steps[(key, name)] = opened
                progress.steps.extend(opened)
            continue
        if etype == "TaskStateExited":
            name = str(d.get("name", ""))
            opened = open_steps.pop((key, name), [])
            if name == "ValidateInput":
                out = json_field(d.get("output"))
                if isinstance(out, Mapping):
                    result = out.get("validated") or {}
                    validated = list(result.get("targets") or [])
                    if isinstance(result.get("n_targets"), int):
                        progress.n_targets = result["n_targets"]
            for st in opened:
                if st.status == "RUNNING":
                    st.status, st.stopped = "SUCCEEDED", ts
            continue
        # -- task events: attach to the open step(s) of this iteration
        candidates = [group for (k, _n), group in open_steps.items() if k == key]
        if not candidates:
            continue
        for st in candidates[-1]:
            if etype == "TaskScheduled":
                st.attempts += 1
                st.status, st.error, st.cause = "RUNNING", None, None
                resolved = names.resolve(json_field(d.get("parameters"))) \
                    if names is not None and d.get("resourceType") == "batch" else None
                if resolved is not None:
                    st.step, st.job = resolved.step, resolved.job
                    st.size_class = resolved.size_class or (st.size_class if st.target else None)
            elif etype == "TaskSubmitted":
                st.job_id = _job_id(d.get("output")) or st.job_id
            elif etype == "TaskSucceeded":
                st.job_id = _job_id(d.get("output")) or st.job_id
                st.status, st.stopped = "SUCCEEDED", ts
            elif etype in ("TaskFailed", "TaskTimedOut", "TaskAborted", "TaskStartFailed", "TaskSubmitFailed"):
                st.job_id = _job_id(d.get("cause")) or st.job_id
                st.status = {"TaskTimedOut": "TIMED_OUT", "TaskAborted": "ABORTED"}.get(etype, "FAILED")
                st.error, st.cause, st.stopped = d.get("error"), d.get("cause"), ts
    aborted = any(e.get("type") == "ExecutionAborted" for e in ordered)
    for group in open_steps.values():  # still open when the execution ended
        for st in group:
            if aborted and st.status == "RUNNING":
                st.status = "ABORTED"
    return progress
