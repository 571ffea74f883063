"""The local driver: the whole CryoEM chain on one machine (``foldstack cryoem run-local``).

Runs each stage in order under the step contract, in the run's folder under ``<out>``'s
``work`` directory (a rerun skips every stage whose done record is intact), then collects
into ``<out>/results/``:
the sharpened map, half maps, mask, FSC (TSV + PNG), particle STAR files, per-micrograph
QC, per-stage timings and resources, ``manifest.json`` (every file with its sha256) and
``report.html``.

Initial model: a supplied reference (request ``reference`` or ``--reference``: a map or an
atomic model, low-pass filtered) or de novo. Reference-bias guard: with a reference, a
second refinement starts from the same reference filtered much harder
(``Knobs.guard_lowpass``) and the two refined maps are compared (FSC 0.143 between them);
if they agree worse than 1.5 x the worse of their gold-standard resolutions,
``bias_guard.flagged`` is set in the manifest and the report. The half-map FSC alone
cannot catch a biased start.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foldstack.core.hashing import sha256_file
from foldstack.cryoem import preprocess, refine
from foldstack.cryoem.costs import stage_costs
from foldstack.cryoem.fsc import fsc_curve, resolution_at
from foldstack.cryoem.mrc import read_mrc
from foldstack.cryoem.relion import relion_version
from foldstack.cryoem.report import plot_fsc, write_report
from foldstack.cryoem.request import CryoemRequest, load_request
from foldstack.cryoem.stagekit import ALL, Knobs, read_json, stage_dir, write_json
from foldstack.cryoem.submission import batch_name
from foldstack.steps.common import check_ids, done_path, log

GUARD_RATIO = 1.5
RESULTS_STAGE = "results"  # the workflow's stage that assembles the results (foldstack step cryoem postprocess)
RESULT_VERSION = 1


def batches_of(movies: list[Path], size: int) -> dict[str, list[Path]]:
    size = max(1, size)
    return {batch_name(i // size): movies[i:i + size] for i in range(0, len(movies), size)}


def stage_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Timings and resources of every finished stage of a run (its done records), named as
    :func:`run_local` names them: ``<stage>`` for the run-wide ones, ``<stage>[<batch>]``."""
    records = {}
    for done in sorted(Path(run_dir).glob("*/*/*.done.json")):
        folder, name = done.parent, done.parent.parent.name
        if done.name != f"{name}.done.json" or folder.name.startswith(".") or name == RESULTS_STAGE:
            continue
        records[name if folder.name == ALL else f"{name}[{folder.name}]"] = _stage_record(folder, name)
    return records


def _stage_record(folder: Path, name: str) -> dict[str, Any]:
    done = read_json(done_path(folder, name))
    res = done.get("resources", {})
    record = {"wall_seconds": done.get("timings", {}).get("total"), "cpu_seconds": res.get("cpu_seconds"),
              "peak_rss_mib": res.get("peak_rss_mib")}
    if isinstance(done.get("ran_on"), dict):
        record["ran_on"] = done["ran_on"]  # where its Batch job ran: what its cost is priced on
    if (folder / "initial_model.json").is_file():
        record["mode"] = read_json(folder / "initial_model.json").get("mode")  # de novo ran on the GPU class
    return record


GUARD_MAX_TURN_DEG = 10.0  # bias_guard: a same-frame pose beyond these is a divergence, not a match
GUARD_MAX_SHIFT_PX = 2.0
# bias_guard, same frame: a global pose elsewhere that fits no better than this (real-space
# correlation) than the pose near the identity does not count as a divergence. At the demos'
# 16-24 Å two refinements of one structure are near-symmetric blobs: one run's global best
# was a mirrored 111° turn at 0.890 against 0.874 near the identity.
GUARD_IDENTITY_TOLERANCE = 0.03


def bias_guard(main_refine: Path, guard_refine: Path, pixel_size: float, *,
               same_frame: bool = True) -> dict[str, Any]:
    """Compare the refinements from the two starts. The guard map is first aligned onto the
    main one (rotation, shift and hand: :mod:`foldstack.cryoem.align`), so that maps in
    different frames, as de novo maps are, are not compared voxel by voxel.

    With `same_frame` (both starts came from one reference, as in :func:`run_local`) the
    aligned comparison counts only if the pose is close to the identity: a refinement that
    turned or changed hand diverged, and at the demos' resolutions (16-24 Å) any two globular
    maps of one size agree to ~20 Å once freely aligned, which would hide a different map.
    When the free alignment lands elsewhere, a local refinement from the identity that fits
    within :data:`GUARD_IDENTITY_TOLERANCE` of it stands for the pose instead (such blobs
    fit several poses about equally well; a local refinement cannot hide a different map).
    Otherwise (a de novo map) the aligned comparison counts. The better of the counted
    comparisons is the agreement (no alignment is one candidate pose, and resampling blurs
    a map a little)."""
    from foldstack.cryoem import align as map_align

    a = read_mrc(main_refine / "Refine3D" / "run_class001.mrc")
    b = read_mrc(guard_refine / "Refine3D" / "run_class001.mrc")
    pose = map_align.align(a, b)
    near_identity = (not pose.mirrored and pose.angle_deg <= GUARD_MAX_TURN_DEG
                     and float(abs(pose.shift).max()) <= GUARD_MAX_SHIFT_PX)
    if same_frame and not near_identity:  # is the identity's neighbourhood as good a fit?
        local = map_align.refine_identity(a, b)
        if (local.correlation >= pose.correlation - GUARD_IDENTITY_TOLERANCE
                and local.angle_deg <= GUARD_MAX_TURN_DEG and float(abs(local.shift).max()) <= GUARD_MAX_SHIFT_PX):
            pose, near_identity = local, True
    # FSC 0.143 between the two full maps: the 0.5 criterion is stricter than the
    # gold-standard one, and flagged two correct refinements that merely differed in how far
    # they got (the harder-filtered start converges lower)
    unaligned = resolution_at(fsc_curve(a, b, pixel_size), 0.143)
    aligned = resolution_at(fsc_curve(a, map_align.apply(b, pose).astype(a.dtype), pixel_size), 0.143)
    cross = min(aligned, unaligned) if (near_identity or not same_frame) else unaligned
    gold = max(read_json(main_refine / "refine3d.json")["gold_standard_resolution"],
               read_json(guard_refine / "refine3d.json")["gold_standard_resolution"])
    return {"cross_resolution_fsc_0.143": round(cross, 2), "cross_resolution_fsc_0.143_aligned": round(aligned, 2),
            "cross_resolution_fsc_0.143_unaligned": round(unaligned, 2), "alignment": pose.to_json(pixel_size),
            "same_frame": same_frame, "pose_near_identity": near_identity,
            "gold_standard_resolution_worst": gold, "ratio_limit": GUARD_RATIO,
            "flagged": bool(cross > GUARD_RATIO * gold)}


def run_local(dataset: Path | str, out: Path | str, *, knobs: Knobs | None = None, reference: Path | None = None,
              batch_size: int = 10, run_id: str = "cryoem", guard: bool = True,
              cache_root: str | None = None) -> dict[str, Any]:
    """Run the chain on a dataset directory; returns the summary also written to
    ``results/manifest.json``. `cache_root`: the preprocessing cache
    (:mod:`foldstack.cryoem.cache`; None: none)."""
    knobs = knobs or Knobs()
    check_ids(run_id, ALL)
    dataset, out = Path(dataset), Path(out)
    request: CryoemRequest = load_request(dataset)
    reference = reference.resolve() if reference else request.reference
    scratch = out / "work"
    batches = batches_of(request.movies, batch_size)
    stages: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()

    def record(folder: Path, name: str) -> Path:
        stages[name if folder.name == ALL else f"{name}[{folder.name}]"] = _stage_record(folder, name)
        return folder

    for batch, movies in batches.items():
        for name, folder in preprocess.preprocess_movies(scratch, run_id, batch, request, movies, knobs,
                                                         cache_root).items():
            record(folder, name)
    curated = record(refine.curate(scratch, run_id, list(batches), request, knobs), "curate")
    classes = record(refine.class2d(scratch, run_id, request, knobs), "class2d")
    init = record(refine.initial_model(scratch, run_id, request, knobs, reference=reference), "initial_model")
    refined = record(refine.refine3d(scratch, run_id, request), "refine3d")
    post = record(refine.postprocess(scratch, run_id, request, knobs), "postprocess")
    guard_result = None
    if reference is not None and guard:
        denovo = bool(knobs.guard_denovo)  # the second start de novo, else the reference filtered harder
        record(refine.initial_model(scratch, run_id, request, knobs, name="initial_model_guard",
                                    reference=None if denovo else reference, lowpass=knobs.guard_lowpass),
               "initial_model_guard")
        guard_dir = record(refine.refine3d(scratch, run_id, request, name="refine3d_guard",
                                           initial="initial_model_guard",
                                           ini_high=40.0 if denovo else knobs.guard_lowpass), "refine3d_guard")
        guard_result = bias_guard(refined, guard_dir, request.optics.pixel_size, same_frame=not denovo)
        if guard_result["flagged"]:
            log("bias_guard", ALL, f"FLAGGED: refinements from two starts agree only to "
                f"{guard_result['cross_resolution_fsc_0.143']} Å; the reference may have biased the result")

    results = out / "results"
    if results.exists():
        shutil.rmtree(results)  # collected again from the stage dirs, which are the record
    results.mkdir(parents=True)
    summary = assemble_results(results, str(dataset), run_id, request, knobs, stages,
                               StageDirs(curated, classes, init, refined, post), guard_result,
                               size_class=local_size_class(request.box_size))
    summary["work_dir"] = str(out / "work" / run_id)
    summary["files"] = file_records(results)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out / "results" / "manifest.json", summary)
    return summary


@dataclass(frozen=True)
class StageDirs:
    """The final folders of the stages whose outputs make the results."""

    curated: Path
    classes: Path
    init: Path
    refined: Path
    post: Path

    @classmethod
    def of_run(cls, scratch: Path, run_id: str) -> StageDirs:
        """A run's stages, each checked finished (bad input otherwise)."""
        return cls(*(stage_dir(scratch, run_id, name, ALL)
                     for name in ("curate", "class2d", "initial_model", "refine3d", "postprocess")))


def file_records(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in sorted(folder.iterdir()) if p.is_file()}


def local_size_class(box_size: int) -> str | None:
    """The size class a box would run in on AWS (jobs.yaml), for pricing a local run."""
    try:
        from foldstack.cryoem.submission import size_class_for
        from foldstack.workflows.specs import load_workflow

        jobs = load_workflow("cryoem").jobs
        return size_class_for(box_size, [(c, spec.max_box_px) for c, spec in jobs.size_classes.items()])
    except Exception:  # noqa: BLE001 - only the cost estimate needs it (and says so when missing)
        return None


def assemble_results(results: Path, dataset: str, run_id: str, request: CryoemRequest, knobs: Knobs,
                     stages: dict[str, dict[str, Any]], dirs: StageDirs,
                     guard_result: dict[str, Any] | None, *, size_class: str | None = None) -> dict[str, Any]:
    """Copy the results out of the stage folders into `results` (an existing, empty
    folder), with the FSC plot, ``qc.json`` and ``report.html``; return the run's summary
    (what the manifest holds, less its file list). Every stage gets its estimated dollar
    cost (:mod:`foldstack.cryoem.costs`, in `size_class`) and the summary the run's."""
    curated, classes, init, refined, post = dirs.curated, dirs.classes, dirs.init, dirs.refined, dirs.post
    copies = {
        "map_sharpened.mrc": post / "PostProcess" / "postprocess.mrc",
        "map_sharpened_masked.mrc": post / "PostProcess" / "postprocess_masked.mrc",
        "postprocess.star": post / "PostProcess" / "postprocess.star",
        "half_map_1.mrc": refined / "Refine3D" / "run_half1_class001_unfil.mrc",
        "half_map_2.mrc": refined / "Refine3D" / "run_half2_class001_unfil.mrc",
        "map_refined.mrc": refined / "Refine3D" / "run_class001.mrc",
        "mask.mrc": post / "mask.mrc",
        "initial_model.mrc": init / "initial_model.mrc",
        "fsc.tsv": post / "fsc.tsv",
        "particles_curated.star": curated / "particles.star",
        "particles_selected.star": classes / "particles_selected.star",
        "particles_refined.star": refined / "Refine3D" / "run_data.star",
        "class2d_selection.json": classes / "selection.json",
    }
    for name, src in copies.items():
        shutil.copy2(src, results / name)
    curation = read_json(curated / "curation.json")
    pp = read_json(post / "postprocess.json")
    curve = [dict(zip(("resolution_angstrom", "fsc_corrected", "fsc_unmasked", "fsc_masked"),
                      map(float, line.split("\t")), strict=True))
             for line in (post / "fsc.tsv").read_text().splitlines()[1:]]
    plot_fsc(results / "fsc.png", curve, resolution=pp["resolution"], title=run_id)
    micrographs = curation["micrographs"]
    write_json(results / "qc.json", {"micrographs": micrographs, "knobs": knobs.to_json()})
    summary: dict[str, Any] = {
        "version": RESULT_VERSION,
        "workflow": "cryoem",
        "run_id": run_id,
        "dataset": str(dataset),
        "request": request.to_json(),
        "relion_version": relion_version(),
        "initial_model": read_json(init / "initial_model.json")["mode"],
        "results": {
            "resolution": pp["resolution"], "bfactor": pp["bfactor"],
            "gold_standard_resolution_refine": read_json(refined / "refine3d.json")["gold_standard_resolution"],
            "particles_refined": read_json(refined / "refine3d.json")["particles"],
            "particles_curated": curation["particles"],
            "micrographs": len(micrographs), "micrographs_kept": sum(m["kept"] for m in micrographs),
        },
        "bias_guard": guard_result,
        "micrographs": micrographs,
        "stages": stages,
        "cpu_seconds": round(sum(s["cpu_seconds"] or 0 for s in stages.values()), 1),
        "size_class": size_class,
        "cost": stage_costs(stages, size_class),
    }
    write_report(results / "report.html", summary)
    return summary
