"""Collect Outputs: the run's summary, failures and manifest, from the per-batch summaries.

Every batch's Publish Batch (:mod:`foldstack.tasks.publish_batch`) has already published its
finished targets and written a summary to scratch (``collect/<batch>.json``: its
TargetResults and failures). This final step reads only those summaries (one per batch,
never a target's files), accounts for every target of the run (a target in no summary:
its batch was not published, ``not_published``), applies the failure budget, and writes the
run-level files: ``summary.tsv`` (one row per target, failed ones with their code),
``failures.tsv``, ``index.html``, the reports' viewer script, and ``manifest.json`` last.

Outcome: ``succeeded`` (no failure), ``partial`` (failures within the budget: the run
succeeds) or ``failed`` (beyond it: the manifest is still written, then
:class:`TooManyFailuresError` fails the run; nothing published is deleted). The budget is the
request's ``max_failed_fraction``, else the workflow's knob (event ``max_failed_fraction``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from foldstack import __version__, storage
from foldstack.core.clock import utcnow
from foldstack.core.errors import FoldstackError, PublishError, TooManyFailuresError
from foldstack.core.hashing import sha256_bytes
from foldstack.core.manifest import (
    FAILED_ROW_KNOWN,
    FAILURES_TSV,
    SCHEMA_VERSION,
    Manifest,
    TargetFailure,
    TargetResult,
    count_text,
    failed_row,
    failures_tsv,
    load_manifest,
    summary_row,
    summary_tsv,
)
from foldstack.core.provenance import run_provenance
from foldstack.reports import VIEWER_ASSET, index_page, viewer_script
from foldstack.tasks.outcomes import not_published
from foldstack.tasks.publish import MANIFEST, TARGET_MARKER, is_complete, put_run_file, remove_temp_files
from foldstack.tasks.publish_batch import SUMMARIES, best_structure, estimate_cost
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.stage import resolve_targets, run_scratch
from foldstack.tasks.validate import parse_request

READERS = 16  # batch summaries read at once
SUMMARY_MAX_BYTES = 16 << 20  # a batch of 8 targets' results is a few tens of KB
DEFAULT_MAX_FAILED_FRACTION = 0.0  # an event without the knob: any failure fails the run


def read_summaries(settings: TaskSettings, run_id: str) -> list[dict[str, Any]]:
    """Every batch summary of the run (one LIST per 1,000 batches, one GET per batch)."""
    prefix = storage.safe_join(run_scratch(settings, run_id), SUMMARIES)
    uris = sorted(info.uri for info in storage.list_prefix(prefix + "/") if info.uri.endswith(".json"))

    def read(uri: str) -> dict[str, Any]:
        return json.loads(storage.read_bytes(uri, max_bytes=SUMMARY_MAX_BYTES))

    with ThreadPoolExecutor(max_workers=READERS) as pool:
        return list(pool.map(read, uris))


def outcome_of(n_targets: int, n_failed: int, budget: float) -> str:
    """``succeeded``, ``partial`` (failures within ``budget``, a fraction of the targets) or
    ``failed`` (beyond it, or nothing folded)."""
    if n_failed == 0:
        return "succeeded"
    if n_failed >= n_targets or n_failed > budget * n_targets:
        return "failed"
    return "partial"


def _known(target: Mapping[str, Any], engine: str) -> dict[str, Any]:
    """What is known of a target without its prediction (core.manifest.FAILED_ROW_KNOWN)."""
    return {"engine": engine, **{k: target.get(k) for k in FAILED_ROW_KNOWN if k != "engine"}}


def _with_known(failure: TargetFailure, known: Mapping[str, Any]) -> TargetFailure:
    """The failure with the target's engine, length, chains and size class (extra fields of
    the manifest's ``failures``), so its summary row (summary.tsv, `Run.metrics()`, index.html)
    says what was asked even though nothing folded."""
    return TargetFailure.model_validate({**failure.model_dump(exclude_none=True),
                                         **{k: v for k, v in known.items() if v is not None}})


def _put(output_uri: str, run_id: str, relpath: str, data: bytes) -> dict[str, Any]:
    put_run_file(output_uri, run_id, relpath, data)
    return {"sha256": sha256_bytes(data), "size": len(data)}


def _already_collected(output_uri: str, run_id: str) -> dict[str, Any] | None:
    """The result of an earlier Collect of this run that succeeded in full (nothing to redo);
    a partial or failed one is collected again (a retry may have folded more targets)."""
    if not is_complete(output_uri, run_id):
        return None
    uri = storage.safe_join(output_uri, run_id, MANIFEST)
    published = load_manifest(storage.read_bytes(uri), source=uri)
    if published.outcome != "succeeded":
        return None
    return {"output": storage.safe_join(output_uri, run_id), "targets": len(published.targets), "failed": 0,
            "outcome": "succeeded"}


def collect_outputs(
    settings: TaskSettings, run_id: str, raw_request: Mapping[str, Any],
    targets: Sequence[Mapping[str, Any]] | None, *, targets_digest: str | None = None,
    max_failed_fraction: float | None = None,
) -> dict[str, Any]:
    """``targets``: the validated list, or None for a large run: then the list Stage Inputs
    wrote to scratch is read and checked against ``targets_digest``."""
    request = parse_request(raw_request)
    done = _already_collected(request.output_uri, run_id)
    if done is not None:
        return done
    targets = resolve_targets(settings, run_id, targets, targets_digest)
    output = storage.safe_join(request.output_uri, run_id)
    try:
        found: dict[str, TargetResult] = {}
        failed: dict[str, TargetFailure] = {}
        markers: dict[str, Any] = {}  # <target>/target.json of each published target
        for summary in read_summaries(settings, run_id):
            markers.update(summary.get("markers") or {})
            for raw in summary.get("targets", []):
                found[raw["id"]] = TargetResult.model_validate(raw)
            for raw in summary.get("failures", []):
                failed[raw["target"]] = TargetFailure.model_validate(raw)
        ids = [str(t["id"]) for t in targets]  # the run's order
        known = {str(t["id"]): _known(t, request.engine) for t in targets}
        missing = {tid: _with_known(failed.get(tid) or not_published(tid), known[tid]) for tid in ids
                   if tid not in found}
        results = [found[tid] for tid in ids if tid in found]
        failures = list(missing.values())
        rows = [summary_row(found[tid]) if tid in found else failed_row(missing[tid]) for tid in ids]
        budget = request.max_failed_fraction
        if budget is None:
            budget = DEFAULT_MAX_FAILED_FRACTION if max_failed_fraction is None else max_failed_fraction
        outcome = outcome_of(len(targets), len(failures), budget)
        cost = estimate_cost(results)  # the run's totals (each target's cost was set when it published)
        # the record of the file Publish Batch copied there (the relaxed best model where there is one)
        run_files: dict[str, Any] = {f"structures/{r.id}.cif": r.files[best].model_dump()
                                     for r in results if (best := best_structure(r.files)) is not None}
        run_files.update({f"{r.id}/{TARGET_MARKER}": markers[r.id] for r in results if r.id in markers})
        viewer = viewer_script()
        if viewer is not None:
            run_files[VIEWER_ASSET] = _put(request.output_uri, run_id, VIEWER_ASSET, viewer)
        run_files["summary.tsv"] = _put(request.output_uri, run_id, "summary.tsv", summary_tsv(rows).encode())
        run_files[FAILURES_TSV] = _put(request.output_uri, run_id, FAILURES_TSV, failures_tsv(failures).encode())
        page = index_page(run_id, rows, reports={r.id for r in results if "report.html" in r.files},
                          demo=any(r.demo_weights for r in results), cost=cost)
        run_files["index.html"] = _put(request.output_uri, run_id, "index.html", page.encode())
        manifest = Manifest.model_validate({
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "created_at": utcnow(),
            "foldstack_version": __version__,
            "request": request.model_dump(mode="json"),
            "targets": results,
            "cost": cost,
            "run_files": run_files,
            "provenance": run_provenance(results),
            "outcome": outcome,
            "failures": failures,
        })
        body = json.dumps(manifest.to_dict(), indent=2, sort_keys=True).encode()
        put_run_file(request.output_uri, run_id, MANIFEST, body)  # last: the run is complete
    except FoldstackError:
        raise
    except Exception as exc:
        # A storage failure (S3 5xx, reset connection, full disk): typed, so the workflow
        # retries it. Only run-level files were being written (no target is touched); a
        # write that died midway may have left its temp file (locally).
        remove_temp_files(request.output_uri, run_id)
        raise PublishError(f"writing the run files of {output} failed: {type(exc).__name__}: {exc}") from exc
    if outcome == "failed":
        kept = f"the {len(results):,} that folded are published" if results else "none folded"
        raise TooManyFailuresError(
            f"{len(failures):,} of {len(targets):,} targets failed ({count_text(failures)}; the budget allows "
            f"{budget:.0%}); {kept}, with the manifest — {FAILURES_TSV}",
            run_id=run_id, failed=len(failures), targets=len(targets))
    return {"output": output, "targets": len(results), "failed": len(failures), "outcome": outcome}

