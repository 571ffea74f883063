"""Deterministic run ids: same request, same id, so Step Functions refuses a duplicate.

The id hashes what determines the results (engine, preset, MSA tool, reuse flag, owner,
output location and every target's id and sequence checksum), not how the request was
spelled: key order, which file a record came from and how its URI was encoded do not
change it. Tags are metadata and do not count.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from foldstack.core.fasta import FastaRecord
from foldstack.core.request import RunRequest

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_HASH_CHARS = 16


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:40].rstrip("-") or "run"


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
    for key in ("db_versions", "num_models", "num_seeds"):
        value = getattr(request, key, None)
        if value:
            body[key] = value
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def make_run_id(request: RunRequest, records: Sequence[FastaRecord]) -> str:
    digest = hashlib.sha256(canonical_request(request, records).encode()).hexdigest()[:_HASH_CHARS]
    first = min(records, key=lambda r: r.id).id if records else "run"
    label = request.owner or first
    run_id = f"{_slug(label)}-{len(records)}-{digest}"
    assert RUN_ID_PATTERN.fullmatch(run_id), run_id
    return run_id
