"""Collect Outputs: verify each target's step outputs and publish them with a manifest."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from foldstack import __version__, storage
from foldstack.core.clock import utcnow
from foldstack.core.errors import FoldstackError, OutputIntegrityError, OutputsNotReadyError, PublishError
from foldstack.core.hashing import sha256_bytes
from foldstack.core.manifest import (
    SCHEMA_VERSION,
    STEP_PROVENANCE_KEYS,
    Manifest,
    PublishedFile,
    TargetResult,
    load_manifest,
    summary_row,
    summary_tsv,
)
from foldstack.reports import VIEWER_ASSET, index_page, target_report, viewer_script
from foldstack.tasks.publish import MANIFEST, Publisher, is_complete
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.stage import resolve_targets, run_scratch
from foldstack.tasks.validate import parse_request

# Besides: per target report.html, and per run summary.tsv, index.html, assets/3Dmol-min.js and
# structures/<target>.cif (the best model of each target), all in manifest.json.
# What each step contributes to the published results, under <run_id>/<target>/.
PUBLISHED = {
    "predict": ("", None),  # every output the predict step recorded (every ranked model, plots)
    "msa": ("msa/", ("msa.a3m", "features.json")),  # the alignment and its provenance
}


def _done(run_root: str, step: str, target: str) -> dict[str, Any]:
    uri = storage.safe_join(run_root, step, target, f"{step}.done.json")
    if not storage.exists(uri):
        raise OutputsNotReadyError(f"{step} outputs of target {target!r} are not in scratch yet: {uri}")
    return json.loads(storage.read_bytes(uri))


def _verified(run_root: str, step: str, target: str, rel: str, sha256: str) -> bytes:
    data = storage.read_bytes(storage.safe_join(run_root, step, target, rel))
    if sha256_bytes(data) != sha256:
        raise OutputIntegrityError(f"{step}/{target}/{rel} does not match the checksum its step recorded")
    return data


def _chain_cache_summary(features_json: bytes) -> dict[str, Any]:
    """``{"chain_cache": ["hit", "miss", ...]}`` per chain, from the msa step's features.json
    (empty for entries made before the chain cache existed)."""
    try:
        chains = json.loads(features_json)["chain_cache"]["chains"]
        return {"chain_cache": [str(c["cache"]) for c in chains]}
    except (ValueError, KeyError, TypeError):
        return {}


def _msa_summary(features_json: bytes) -> dict[str, Any]:
    """The msa step's database preset, ``{database: version}`` and pairing status, from its
    features.json (a cache hit's tells of the run that searched it); empty if absent."""
    try:
        info = json.loads(features_json)
    except ValueError:
        return {}
    if not isinstance(info, dict):
        return {}
    out: dict[str, Any] = {}
    if info.get("db_preset"):
        out["db_preset"] = str(info["db_preset"])
    dbs = [d for d in (info.get("databases") or []) + [(info.get("templates") or {}).get("database")]
           if isinstance(d, dict) and d.get("name")]
    if dbs:
        out["databases"] = {str(d["name"]): str(d.get("version")) for d in dbs}
    if isinstance(info.get("pairing"), dict) and info["pairing"].get("status"):
        out["pairing"] = str(info["pairing"]["status"])
    return out


def _estimate_cost(results: list[TargetResult]) -> dict[str, Any]:
    """Per-target and run cost estimate (foldstack.cost); never fails the collect."""
    try:
        from foldstack.cost import annotate_costs
    except ImportError as exc:  # a Lambda package built without foldstack.cost / PyYAML
        return {"estimated_total_usd": None, "unavailable": f"ImportError: {exc}"}
    return annotate_costs(results)


def _put(publisher: Publisher, relpath: str, data: bytes) -> dict[str, Any]:
    publisher.put(relpath, data)
    return {"sha256": sha256_bytes(data), "size": len(data)}


def _publish_reports(publisher: Publisher, run_id: str, results: list[TargetResult],
                     inputs: Mapping[str, Mapping[str, bytes]], cost: Mapping[str, Any]) -> dict[str, Any]:
    """Each target's report.html (added to its files), the run's summary.tsv, index.html and
    the viewer script the reports share (foldstack.reports); returns the run-level files."""
    run_files: dict[str, Any] = {}
    viewer = viewer_script()
    if viewer is not None:
        run_files[VIEWER_ASSET] = _put(publisher, VIEWER_ASSET, viewer)
    for result in results:
        got = inputs.get(result.id, {})
        page = target_report(result.model_dump(mode="json"), run_id=run_id,
                             structure_pdb=got["ranked_0.pdb"].decode() if "ranked_0.pdb" in got else None,
                             plddt_tsv=got["plddt.tsv"].decode() if "plddt.tsv" in got else None,
                             viewer_src=f"../{VIEWER_ASSET}" if viewer is not None else None)
        entry = _put(publisher, f"{result.id}/report.html", page.encode())
        result.files["report.html"] = PublishedFile.model_validate(entry)
    run_files["summary.tsv"] = _put(publisher, "summary.tsv", summary_tsv([summary_row(r) for r in results]).encode())
    page = index_page(run_id, [r.model_dump(mode="json") for r in results], cost=cost)
    run_files["index.html"] = _put(publisher, "index.html", page.encode())
    return run_files


def collect_outputs(
    settings: TaskSettings, run_id: str, raw_request: Mapping[str, Any],
    targets: Sequence[Mapping[str, Any]] | None, *, targets_digest: str | None = None,
) -> dict[str, Any]:
    """``targets``: the validated list, or None for a large run: then the list Stage Inputs
    wrote to scratch is read and checked against ``targets_digest``."""
    request = parse_request(raw_request)
    if is_complete(request.output_uri, run_id):
        uri = storage.safe_join(request.output_uri, run_id, MANIFEST)
        published = load_manifest(storage.read_bytes(uri), source=uri)
        return {"output": storage.safe_join(request.output_uri, run_id), "targets": len(published.targets)}
    targets = resolve_targets(settings, run_id, targets, targets_digest)
    run_root = run_scratch(settings, run_id)
    steps = ["msa", "predict"] if request.needs_msa else ["predict"]
    publisher = Publisher(request.output_uri, run_id)
    results: list[TargetResult] = []
    report_inputs: dict[str, dict[str, bytes]] = {}  # per target: the best model and plddt.tsv
    run_files: dict[str, dict[str, Any]] = {}
    try:
        for target in targets:
            tid = target["id"]
            files: dict[str, dict[str, Any]] = {}
            provenance: dict[str, Any] = {}
            for step in steps:
                done = _done(run_root, step, tid)
                provenance[step] = {k: done.get(k) for k in STEP_PROVENANCE_KEYS}
                if step == "msa":  # MSA cache: hit (copied from the cache) or computed by the job
                    provenance[step]["msa_cache"] = "hit" if (done.get("cache") or {}).get("hit") else "miss"
                dest, keep = PUBLISHED[step]
                for rel, sha in sorted(done["outputs"].items()):
                    if keep is not None and rel not in keep:
                        continue
                    data = _verified(run_root, step, tid, rel, sha)
                    if step == "msa" and rel == "features.json":
                        provenance[step].update(_msa_summary(data))
                        if provenance[step]["msa_cache"] == "miss":
                            # this run's job made it (a hit's features.json tells of the run that did)
                            provenance[step].update(_chain_cache_summary(data))
                    publisher.put(f"{tid}/{dest}{rel}", data)
                    files[f"{dest}{rel}"] = {"sha256": sha, "size": len(data)}
                    if step == "predict" and rel in ("ranked_0.pdb", "ranked_0.cif", "plddt.tsv"):
                        report_inputs.setdefault(tid, {})[rel] = data
                    if step == "predict" and rel == "ranked_0.cif":  # run-level folder for bulk download
                        publisher.put(f"structures/{tid}.cif", data)
                        run_files[f"structures/{tid}.cif"] = {"sha256": sha, "size": len(data)}
            metrics = json.loads(storage.read_bytes(storage.safe_join(run_root, "predict", tid, "metrics.json")))
            results.append(TargetResult.model_validate(
                {**dict(target), "files": files, "metrics": metrics, "provenance": provenance}))
        cost = _estimate_cost(results)  # sets each target's cost; an estimate
        run_files.update(_publish_reports(publisher, run_id, results, report_inputs, cost))
        manifest = Manifest.model_validate({
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "created_at": utcnow(),
            "foldstack_version": __version__,
            "request": request.model_dump(mode="json"),
            "targets": results,
            "cost": cost,
            "run_files": run_files,
        })
        publisher.commit(manifest.to_dict())
    except BaseException as exc:
        publisher.abort()
        if isinstance(exc, FoldstackError) or not isinstance(exc, Exception):
            raise
        # A storage failure (S3 5xx, reset connection, full disk): typed, so the workflow
        # retries it; the publish was rolled back above.
        raise PublishError(f"publishing results to {publisher.final} failed: {type(exc).__name__}: {exc}") from exc
    if request.needs_msa:  # results are published: now keep the new MSAs (never fails the run)
        from foldstack.tasks.msa_cache import fill

        fill(settings, run_id, targets)
    return {"output": publisher.final, "targets": len(results)}
