"""Run records: ``runs/<run_id>/run.json`` and ``runs/<run_id>/events.jsonl``.

``run.json`` is replaced whole and atomically (:func:`foldstack.storage.write_pointer`):
a reader sees the previous record or the new one. Fields: ``run_id``, ``status``
(RUNNING or a terminal status), ``execution`` (1, 2, ... : how many times the run was
started), ``driver`` (the identity of the process driving it), ``started_at``,
``stopped_at``, ``request``, ``output``, ``error``, ``cause``, ``result``, ``history``
(a summary of every event, written at the end), ``runtime_errors`` and ``previous``
(status, error and cause of earlier executions).

``events.jsonl`` gets one line per history event while the run goes (with the event's
details), so another process can follow a run's progress, find its Batch job ids, and
see where an interrupted run stopped.

A record that cannot be parsed is a :class:`CorruptRecord` for that run only; listing
other runs still works (the bad one is shown with status ``UNKNOWN``).
"""

from __future__ import annotations

import errno
import json
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from foldstack import storage
from foldstack.local.errors import CorruptRecord

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
UNKNOWN = "UNKNOWN"
#: writing the terminal record is retried this many times (a full disk may free up)
TERMINAL_WRITE_ATTEMPTS = 12
TERMINAL_WRITE_MAX_DELAY_S = 30.0
_sleep = time.sleep


def target_of(path: tuple[int, ...], target_ids: Sequence[str | Sequence[str]]) -> str | None:
    """The target a Map path belongs to. ``target_ids`` items are target ids (one Map
    iteration per target) or batches of ids (the fold workflow: outer Map per batch,
    inner Map per target; a batch-level event names the batch's ids joined by ',')."""
    if not path or path[0] >= len(target_ids):
        return None
    item = target_ids[path[0]]
    if isinstance(item, str):
        return item
    if len(path) > 1 and path[1] < len(item):
        return item[path[1]]
    return ",".join(item)


def event_dict(event: Any, target_ids: Sequence[str | Sequence[str]] = (), *, details: bool = False
               ) -> dict[str, Any]:
    """A history event as plain JSON: type, state, target (for Map iterations), error;
    with `details`, also the previous event's id and the event's details (as on AWS)."""
    path = tuple(event.map_path)
    out = {
        "id": event.id,
        "type": event.type,
        "timestamp": event.timestamp.isoformat(),
        "state": event.state_name,
        "map_path": list(path),
        "target": target_of(path, target_ids),
        "error": event.error,
        "cause": event.cause,
    }
    if details:
        out["previous_id"] = event.previous_id
        out["details"] = dict(event.details)
    return out


def read_record(path: Path) -> dict[str, Any] | None:
    """The record, or None if there is none; CorruptRecord if it cannot be used."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptRecord(f"run record {path} cannot be read: {exc}") from None
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise CorruptRecord(f"run record {path} is not valid JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("status"), str):
        raise CorruptRecord(f"run record {path} has no status")
    return record


def unknown_record(run_id: str, reason: str) -> dict[str, Any]:
    return {"run_id": run_id, "status": UNKNOWN, "error": "CorruptRecord", "cause": reason}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_record(run_id: str, request: dict[str, Any], output: str, driver: dict[str, Any],
               previous: dict[str, Any] | None, *, detached: bool = False) -> dict[str, Any]:
    """The RUNNING record of a new execution; `previous` (the record it replaces, if any)
    is summarised under ``previous`` (the last ten executions)."""
    prior: list[dict[str, Any]] = []
    execution = 1
    if previous:
        execution = int(previous.get("execution") or 1) + 1
        prior = [p for p in previous.get("previous") or [] if isinstance(p, dict)][-9:]
        prior.append({k: previous.get(k) for k in ("execution", "status", "error", "cause", "started_at",
                                                    "stopped_at")})
    return {"run_id": run_id, "status": "RUNNING", "execution": execution, "driver": driver,
            "detached": detached, "started_at": now(), "request": request, "output": output, "previous": prior}


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Replace the record atomically (OSError, e.g. ENOSPC, leaves the old one intact)."""
    storage.write_pointer(str(path), json.dumps(record, indent=2, default=str))


def write_terminal(path: Path, record: dict[str, Any], *, attempts: int | None = None) -> bool:
    """Write a terminal record, retrying (bounded, with backoff) while the disk is full
    or the write fails otherwise: the last good record stays in place meanwhile.
    Returns False if every attempt failed (the next reader then finds the run RUNNING
    with nobody driving it, and records it as interrupted)."""
    attempts = attempts or TERMINAL_WRITE_ATTEMPTS
    for n in range(attempts):
        try:
            write_record(path, record)
            return True
        except OSError as exc:
            if n == 0:
                reason = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
                print(f"foldstack: cannot write {path} ({reason}); retrying up to {attempts} times",
                      file=sys.stderr, flush=True)
            if n + 1 < attempts:
                _sleep(min(0.5 * 2**n, TERMINAL_WRITE_MAX_DELAY_S))
    print(f"foldstack: gave up writing {path}; the next command that reads the run records it "
          "as interrupted", file=sys.stderr, flush=True)
    return False


class EventLog:
    """Appends history events to ``events.jsonl`` (thread-safe; a failed write, such as a
    full disk, stops the log quietly: the final record still carries the history)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._broken = False

    def reset(self) -> None:
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text("")
            except OSError:
                self._broken = True

    def append(self, event: dict[str, Any]) -> None:
        with self._lock:
            if self._broken:
                return
            try:
                with self.path.open("a") as fh:
                    fh.write(json.dumps(event, default=str) + "\n")
            except OSError:
                self._broken = True


def read_events(path: Path) -> list[dict[str, Any]]:
    """Events from ``events.jsonl``; a torn last line (a driver killed mid-write) is skipped."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events
