"""Deterministic run ids: same request, same id, so Step Functions refuses a duplicate.

The id hashes what determines the results (engine, preset, MSA tool, reuse flag, owner,
output location and every target's id and sequence checksum), not how the request was
spelled: key order, which file a record came from and how its URI was encoded do not
change it. Tags are metadata and do not count.

**Attempts.** A run id names one run (its scratch ``<scratch>/<run_id>/`` and results
``<output>/<run_id>/``) across every execution of it. The first execution is named by
the run id itself; a retry or ``submit --rerun`` starts attempt N (N >= 2), an execution
named ``<run_id>-a<N>`` (:func:`execution_name`; ``foldstack rerun`` is a new run instead, its
request's ``rerun_of`` in the hash), and :func:`parse_execution_name` /
:func:`run_id_of` give the run id and attempt back (the Cleanup Lambda uses it on the
EventBridge event of an aborted execution). Execution names are 1-80 of
``[A-Za-z0-9_-]`` (Step Functions), so :func:`make_run_id` keeps ids within
:data:`RUN_ID_MAX_WITH_ATTEMPTS` (74) characters, room for ``-a9999``. Its ids end in 16
hex digits, never in ``-a<digits>``, so a name parses one way only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from foldstack.core.fasta import FastaRecord
from foldstack.core.request import DEFAULT_RELAX, RunRequest

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
EXECUTION_NAME_MAX = 80  # Step Functions: 1-80 of [A-Za-z0-9_-]
ATTEMPT_MAX = 9999
RUN_ID_MAX_WITH_ATTEMPTS = EXECUTION_NAME_MAX - len(f"-a{ATTEMPT_MAX}")  # 74
_ATTEMPT_NAME = re.compile(r"^(?P<run_id>[A-Za-z0-9_-]+)-a(?P<attempt>[1-9][0-9]{0,3})$")
_HASH_CHARS = 16
_SLUG_MAX = 40


def _slug(text: str, limit: int = _SLUG_MAX) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max(1, limit)].rstrip("-") or "run"


def execution_name(run_id: str, attempt: int = 1) -> str:
    """The name of attempt `attempt` of `run_id`: the run id itself for the first,
    ``<run_id>-a<attempt>`` for a retry or rerun (2 to :data:`ATTEMPT_MAX`)."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise ValueError(f"invalid run id {run_id!r}: expected 1-80 of [A-Za-z0-9_-]")
    if not 1 <= attempt <= ATTEMPT_MAX:
        raise ValueError(f"attempt {attempt} of run {run_id}: expected 1 to {ATTEMPT_MAX}")
    if attempt == 1:
        return run_id
    name = f"{run_id}-a{attempt}"
    if len(name) > EXECUTION_NAME_MAX or parse_execution_name(run_id)[1] != 1:
        raise ValueError(f"run id {run_id!r} cannot take an attempt suffix (execution names are at most "
                         f"{EXECUTION_NAME_MAX} characters and the run id must not end in -a<digits>)")
    return name


def parse_execution_name(name: str) -> tuple[str, int]:
    """(run id, attempt) of an execution name: the inverse of :func:`execution_name`."""
    m = _ATTEMPT_NAME.fullmatch(name)
    if m is not None and int(m["attempt"]) >= 2:
        return m["run_id"], int(m["attempt"])
    return name, 1


def run_id_of(name: str) -> str:
    """The run id an execution name belongs to (its attempt suffix removed)."""
    return parse_execution_name(name)[0]


def canonical_request(request: RunRequest, records: Sequence[FastaRecord]) -> str:
    body = {
        "schema_version": request.schema_version,
        "engine": request.engine,
        "preset": request.preset,
        "msa_tool": request.msa_tool,
        "reuse_msa": request.reuse_msa,
        "owner": request.owner,
        "output_uri": request.output_uri.rstrip("/"),
        "targets": sorted([r.id, r.sha256] for r in records),
    }
    # Options that change the results, only when set (run ids of requests without them stay as they were).
    for key in ("db_versions", "num_models", "num_seeds", "rerun_of"):
        value = getattr(request, key, None)
        if value:
            body[key] = value
    if request.relax != DEFAULT_RELAX.get(request.engine):  # the engine's default keeps the old run id
        body["relax"] = request.relax
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def make_run_id(request: RunRequest, records: Sequence[FastaRecord]) -> str:
    digest = hashlib.sha256(canonical_request(request, records).encode()).hexdigest()[:_HASH_CHARS]
    first = min(records, key=lambda r: r.id).id if records else "run"
    label = request.owner or first
    tail = f"-{len(records)}-{digest}"
    run_id = f"{_slug(label, min(_SLUG_MAX, RUN_ID_MAX_WITH_ATTEMPTS - len(tail)))}{tail}"
    assert RUN_ID_PATTERN.fullmatch(run_id) and len(run_id) <= RUN_ID_MAX_WITH_ATTEMPTS, run_id
    return run_id
