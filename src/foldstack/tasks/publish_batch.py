"""Publish Batch: as each batch finishes, publish its finished targets and record its failures.

The last state of each batch's iteration (the workflow's ``PublishBatch``). For every target
of the batch, in order:

* its MSA failed (the workflow's ``msa`` outcomes) → a failure (step ``msa``);
* already published (``<run_id>/<target>/target.json``, by an earlier attempt) → reused;
* its predict done record is there → its step outputs are verified against their recorded
  sha256 and published as one atomic publish (:class:`~foldstack.tasks.publish.Publisher`),
  with its report.html and ``structures/<target>.cif``;
* else its step's failure record, else the failure of the batch's Predict job
  (:mod:`foldstack.tasks.outcomes`) → a failure (step ``predict``); a Predict job that
  succeeded without leaving either is an :class:`OutputsNotReadyError` (scratch not
  exported yet: the workflow retries).

Before publishing, the finished targets' done records get the instance type each job ran on
(``ran_on.instance_type`` / ``purchase``, :mod:`foldstack.tasks.instances`: in the cloud, a
few batched Batch and ECS calls; the cost estimate prices that type, or the cheapest fitting
one, flagged, where it could not be found).

Then a small summary (the batch's TargetResults and failures) goes to scratch,
``collect/<batch>.json``, for Collect Outputs, and the MSAs it computed go to the MSA cache.
The work is bounded by the batch's size (knobs ``batching.max_targets_per_job``), never by the
run's. A storage failure is a :class:`PublishError` (the workflow retries it); the target
being published is rolled back and nothing published is deleted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from foldstack import storage
from foldstack.core.errors import FoldstackError, OutputIntegrityError, OutputsNotReadyError, PublishError
from foldstack.core.hashing import sha256_bytes
from foldstack.core.manifest import STEP_PROVENANCE_KEYS, PublishedFile, TargetFailure, TargetResult
from foldstack.reports import VIEWER_ASSET, target_report
from foldstack.tasks.instances import record_instance_types
from foldstack.tasks.outcomes import job_failure, recorded_failure
from foldstack.tasks.publish import Publisher, published_target, put_run_file, remove_temp_files
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.stage import run_scratch
from foldstack.tasks.validate import parse_request

# What each step contributes to the published results, under <run_id>/<target>/.
PUBLISHED = {
    "predict": ("", None),  # every output the predict step recorded (every ranked model, plots)
    "msa": ("msa/", ("msa.a3m", "features.json")),  # the alignment and its provenance
}
SUMMARIES = "collect"  # <scratch>/<run_id>/collect/<batch>.json
REPORT_INPUTS = ("ranked_0.pdb", "plddt.tsv")
# ``structures/<target>.cif``, the best model for bulk download: relaxed where it was (AlphaFold's
# ranked_0 is its relaxed best, too), else as predicted
BEST_STRUCTURES = ("relaxed_0.cif", "ranked_0.cif")


def best_structure(files: Mapping[str, Any]) -> str | None:
    """Which of a target's files ``structures/<target>.cif`` is (None: no structure). The one
    place it is chosen: Publish Batch copies that file, Collect records that file's checksum."""
    return next((name for name in BEST_STRUCTURES if name in files), None)


def summary_uri(settings: TaskSettings, run_id: str, batch: str) -> str:
    return storage.safe_join(run_scratch(settings, run_id), SUMMARIES, f"{batch}.json")


def _done(run_root: str, step: str, target: str) -> dict[str, Any] | None:
    uri = storage.safe_join(run_root, step, target, f"{step}.done.json")
    if not storage.exists(uri):
        return None
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


def estimate_cost(results: list[TargetResult], jobs: Any = None) -> dict[str, Any]:
    """Per-target and run cost estimate (foldstack.cost); never fails the publish. `jobs`:
    the fold jobs.yaml model when the caller loaded it once (:func:`fold_jobs`)."""
    try:
        from foldstack.cost import annotate_costs
    except ImportError as exc:  # a Lambda package built without foldstack.cost / PyYAML
        return {"estimated_total_usd": None, "unavailable": f"ImportError: {exc}"}
    return annotate_costs(results, jobs=jobs)


def fold_jobs() -> Any:
    """The fold jobs.yaml model, loaded once per invocation (~50 ms a load: per target, a
    250-target batch spent 12 s on it); None where it cannot load (annotate_costs then says why)."""
    try:
        from foldstack.workflows.specs import load_workflow

        return load_workflow("fold").jobs
    except Exception:  # noqa: BLE001 - the estimate reports it; never fails the publish
        return None


def _step_dones(run_root: str, tid: str, steps: Sequence[str], predict_done: dict[str, Any]) -> dict[str, Any]:
    """A finished target's done record of each step (predict's already read)."""
    dones = {}
    for step in steps:
        done = predict_done if step == "predict" else _done(run_root, step, tid)
        if done is None:
            raise OutputsNotReadyError(f"{step} outputs of target {tid!r} are not in scratch yet")
        dones[step] = done
    return dones


def _collect_target(run_root: str, target: Mapping[str, Any], steps: Sequence[str],
                    dones: Mapping[str, dict[str, Any]]) -> tuple[TargetResult, dict[str, bytes]]:
    """One finished target's result and the files to publish (relative to its folder)."""
    tid = str(target["id"])
    files: dict[str, dict[str, Any]] = {}
    blobs: dict[str, bytes] = {}
    provenance: dict[str, Any] = {}
    for step in steps:
        done = dones[step]
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
            blobs[f"{dest}{rel}"] = data
            files[f"{dest}{rel}"] = {"sha256": sha, "size": len(data)}
    metrics = json.loads(storage.read_bytes(storage.safe_join(run_root, "predict", tid, "metrics.json")))
    result = TargetResult.model_validate({**dict(target), "files": files, "metrics": metrics,
                                          "provenance": provenance})
    return result, blobs


def _publish_target(output_uri: str, run_id: str, result: TargetResult,
                    blobs: Mapping[str, bytes]) -> dict[str, Any]:
    """Publish one target: its files and report.html, then target.json last (atomic);
    returns target.json's ``{"sha256", "size"}``."""
    tid = result.id
    # the run-level folder for bulk download (a single atomic write): the best model
    best = best_structure(blobs)
    if best is not None:
        put_run_file(output_uri, run_id, f"structures/{tid}.cif", blobs[best])
    got = {k: blobs[k].decode() for k in REPORT_INPUTS if k in blobs}
    page = target_report(result.model_dump(mode="json"), run_id=run_id, structure_pdb=got.get("ranked_0.pdb"),
                         plddt_tsv=got.get("plddt.tsv"), viewer_src=f"../{VIEWER_ASSET}").encode()
    publisher = Publisher(output_uri, run_id, tid)
    try:
        for rel, data in blobs.items():
            publisher.put(rel, data)
        publisher.put("report.html", page)
        result.files["report.html"] = PublishedFile(sha256=sha256_bytes(page), size=len(page))
        return publisher.commit(result.model_dump(mode="json", exclude_none=True))
    except BaseException:
        publisher.abort()
        result.files.pop("report.html", None)
        raise


def publish_batch(settings: TaskSettings, run_id: str, raw_request: Mapping[str, Any], batch: Mapping[str, Any],
                  msa: Sequence[Mapping[str, Any]], predict: Mapping[str, Any]) -> dict[str, Any]:
    """``batch``: Plan Batches' batch; ``msa``: the per-target MSA outcomes (failed ones
    carry ``failed``, ``error``, ``cause``); ``predict``: how the Predict job ended."""
    request = parse_request(raw_request)
    run_root = run_scratch(settings, run_id)
    steps = ["msa", "predict"] if request.needs_msa else ["predict"]
    msa_failed = {str(o["target"]): o for o in msa if o.get("failed")}
    results: dict[str, TargetResult] = {}  # by target id; the summary lists them in the batch's order
    markers: dict[str, dict[str, Any]] = {}  # each published target's target.json (sha256, size)
    failures: list[TargetFailure] = []
    finished: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (target, its done records) to publish
    try:
        for bt in batch["targets"]:
            target = {**dict(bt), "size_class": batch["size_class"]}
            tid = str(target["id"])
            if tid in msa_failed:
                o = msa_failed[tid]
                failures.append(recorded_failure(run_root, "msa", tid)
                                or job_failure(tid, "msa", o.get("error"), o.get("cause")))
                continue
            published = published_target(request.output_uri, run_id, tid)
            if published is not None:  # by an earlier attempt: reused as it is
                results[tid] = TargetResult.model_validate(published[0])
                markers[tid] = published[1]
                continue
            done = _done(run_root, "predict", tid)
            if done is None:
                failure = recorded_failure(run_root, "predict", tid)
                if failure is None and not predict.get("failed"):
                    raise OutputsNotReadyError(f"predict of target {tid!r} succeeded but neither its outputs "
                                               "nor a failure record are in scratch yet")
                failures.append(failure or job_failure(tid, "predict", predict.get("error"), predict.get("cause")))
                continue
            finished.append((target, _step_dones(run_root, tid, steps, done)))
        # the instance type each of the batch's jobs ran on, into its done records' ran_on (cloud:
        # asked of Batch and ECS in a few batched calls; never fails the publish); an MSA cache
        # hit is priced at nothing, so its job is not asked
        jobs = fold_jobs() if finished else None
        record_instance_types((d["ran_on"] for _, dones in finished for d in dones.values()
                               if isinstance(d.get("ran_on"), dict) and not (d.get("cache") or {}).get("hit")),
                              jobs=jobs)
        for target, dones in finished:
            # one target at a time: only its files are held in memory
            result, blobs = _collect_target(run_root, target, steps, dones)
            estimate_cost([result], jobs)  # sets the target's cost (an estimate)
            markers[result.id] = _publish_target(request.output_uri, run_id, result, blobs)
            results[result.id] = result
        ordered = [results[str(bt["id"])] for bt in batch["targets"] if str(bt["id"]) in results]
        summary = {"batch": batch["batch"], "targets": [r.model_dump(mode="json", exclude_none=True) for r in ordered],
                   "markers": markers, "failures": [f.model_dump(mode="json", exclude_none=True) for f in failures]}
        uri = summary_uri(settings, run_id, str(batch["batch"]))
        storage.write_bytes(uri, json.dumps(summary, sort_keys=True).encode(), content_type="application/json")
    except FoldstackError:
        raise
    except Exception as exc:
        # A storage failure (S3 5xx, reset connection, full disk): typed, so the workflow
        # retries it; the target being published was rolled back, the others stay published
        # (a structures/ write that died midway may have left its temp file, locally).
        remove_temp_files(request.output_uri, run_id)
        raise PublishError(f"publishing batch {batch.get('batch')} of run {run_id} failed: "
                           f"{type(exc).__name__}: {exc}") from exc
    if request.needs_msa:  # results are published: now keep the new MSAs (never fails the batch)
        from foldstack.tasks.msa_cache import fill

        fill(settings, run_id, [dict(bt) for bt in batch["targets"] if str(bt["id"]) not in msa_failed])
    return {"published": len(results), "failed": len(failures), "summary": uri}
