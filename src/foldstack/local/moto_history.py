"""Execution history: moto's event managers, subclassed to annotate and report each event.

:class:`HookedEventManager` is the event manager of every execution of the local engine:
it records each history event with its state name and Map iteration path (see
:func:`_annotate`), reports it to the engine, and turns any ``States.Runtime`` event
into a failure of the whole execution. :class:`ChildEventManager` serves Distributed
Map child executions, whose events stay out of the parent's history. Both drop the
events of states whose frame was already stopped (``moto_hooks.CANCELLED``).
"""

from __future__ import annotations

import datetime
from typing import Any

from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

from foldstack.local.moto_hooks import CANCELLED, STATES_RUNTIME, ExecutionRun


def _parse_ts(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value
    text = str(value).replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return datetime.datetime.now(tz=datetime.UTC)


def _truncate(frames: tuple[tuple[str, int], ...], map_name: str | None) -> tuple[tuple[str, int], ...]:
    for k, (name, _index) in enumerate(frames):
        if name == map_name:
            return frames[:k]
    return frames


def _annotate(
    etype: str, details: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str | None, tuple[tuple[str, int], ...]]:
    """State name and Map frames ((map state, iteration index), ...) of one event.

    moto chains events within a frame by previousEventId, and a Map worker thread
    reuses its frame for several iterations, so iteration frames are rebuilt from the
    Map state's name at every Map event.
    """
    state_name = prev["state_name"] if prev else None
    frames: tuple[tuple[str, int], ...] = prev["map_frames"] if prev else ()
    if etype.startswith("Execution"):
        return None, ()
    if etype.startswith("MapIteration"):
        name = details.get("name", state_name)
        return name, (*_truncate(frames, name), (name, int(details.get("index", -1))))
    if etype.startswith("MapState") or etype.startswith("MapRun"):
        if "name" in details:
            name = details["name"]
        elif prev and prev["type"].startswith(("MapStateEntered", "MapStateStarted", "MapRun")):
            name = state_name  # a Map-level event of this same Map
        elif frames:
            name = frames[-1][0]  # first event after this Map's iterations
        else:
            name = state_name
        return name, _truncate(frames, name)
    if etype.endswith("StateEntered") or etype.endswith("StateExited"):
        state_name = details.get("name", state_name)
    return state_name, frames


def _is_cancelled(event_details: Any) -> bool:
    if not event_details:
        return False
    details = next(iter(event_details.values()))
    return isinstance(details, dict) and details.get("error") == CANCELLED


class HookedEventManager(EventManager):
    """Records each event with its state name and Map iteration path; reports it."""

    def __init__(self, run: ExecutionRun):
        super().__init__(cloud_watch_logging_session=None)
        self._run = run
        self._annotated: dict[int, dict[str, Any]] = {}

    def _publish_history_event(self, event_id, source_event_id, event_type, timestamp, event_details):
        super()._publish_history_event(
            event_id=event_id,
            source_event_id=source_event_id,
            event_type=event_type,
            timestamp=timestamp,
            event_details=event_details,
        )
        etype = str(getattr(event_type, "value", event_type))
        details: dict[str, Any] = {}
        if event_details:
            details = dict(next(iter(event_details.values())))
        prev = self._annotated.get(source_event_id)
        state_name, frames = _annotate(etype, details, prev)
        self._annotated[event_id] = {
            "id": event_id,
            "previous_id": source_event_id,
            "type": etype,
            "timestamp": _parse_ts(timestamp),
            "state_name": state_name,
            "map_frames": frames,
            "map_path": tuple(index for _name, index in frames),
            "details": details,
        }
        err = details.get("error")
        if err == STATES_RUNTIME:
            self._run._note_runtime_error(details.get("cause", ""))

    def add_event(self, context, event_type, event_details=None, timestamp=None, update_source_event_id=True):
        if _is_cancelled(event_details):
            return context.last_published_event_id
        event_id = super().add_event(
            context=context,
            event_type=event_type,
            event_details=event_details,
            timestamp=timestamp,
            update_source_event_id=update_source_event_id,
        )
        with self._mutex:
            event = self._annotated.get(event_id)
        if event is not None:
            self._run._report_event(event)
        return event_id

    def annotated(self) -> list[dict[str, Any]]:
        with self._mutex:
            return [dict(self._annotated[k]) for k in sorted(self._annotated)]


class ChildEventManager(EventManager):
    """Events of Distributed Map child executions: not kept in the parent's history;
    only checked for States.Runtime."""

    def __init__(self, run: ExecutionRun):
        super().__init__(cloud_watch_logging_session=None)
        self._run = run

    def add_event(self, context, event_type, event_details=None, timestamp=None, update_source_event_id=True):
        if _is_cancelled(event_details):
            return context.last_published_event_id
        return super().add_event(
            context=context,
            event_type=event_type,
            event_details=event_details,
            timestamp=timestamp,
            update_source_event_id=update_source_event_id,
        )

    def _publish_history_event(self, event_id, source_event_id, event_type, timestamp, event_details):
        if event_details:
            details = next(iter(event_details.values()))
            if isinstance(details, dict) and details.get("error") == STATES_RUNTIME:
                self._run._note_runtime_error(details.get("cause", ""))
