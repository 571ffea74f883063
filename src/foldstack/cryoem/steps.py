"""The cryoem workflow's Batch jobs (``foldstack step cryoem ...``, jobs.yaml's commands):
each runs stages of :mod:`foldstack.cryoem.preprocess` / :mod:`foldstack.cryoem.refine`
on a staged run, ``<scratch>/<run_id>/``, which Stage Inputs wrote
(:mod:`foldstack.cryoem.tasks`): ``input/request.json`` (the request as a dataset's,
movies under ``input/movies/``) and ``input/run.json`` (batches, knobs, bias guard).

Each stage runs under the step contract (done record, attempt folder, exit codes), so a
job that ran before exits at once, and a rerun of the workflow redoes only what did not
finish. ``postprocess`` ends the chain: post-processing, the bias guard's comparison
(when the run has one) and the ``results`` stage, which assembles what Collect Outputs
publishes (maps, FSC, particles, QC, report, ``summary.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.cryoem import preprocess, refine
from foldstack.cryoem.knobs import Knobs
from foldstack.cryoem.pipeline import RESULTS_STAGE, StageDirs, assemble_results, bias_guard, stage_records
from foldstack.cryoem.request import CryoemRequest, load_request
from foldstack.cryoem.stagekit import ALL, read_json, stage, stage_dir, write_json
from foldstack.steps.common import StepContext, log

GPU_STAGES = ("class2d", "initial_model", "refine3d")
GUARD = "_guard"  # the bias guard's second start and refinement: `<stage>_guard`


def load_run(scratch: Path, run_id: str) -> tuple[CryoemRequest, dict[str, Any]]:
    folder = Path(scratch) / run_id / "input"
    if not (folder / "run.json").is_file():
        raise BadInputError(f"run {run_id} is not staged: no {folder / 'run.json'}")
    return load_request(folder / "request.json"), read_json(folder / "run.json")


def _knobs(run: dict[str, Any]) -> Knobs:
    return Knobs.with_overrides(run.get("knobs") or {})


def preprocess_batch(scratch: Path, run_id: str, batch: str, cache_root: str = "") -> Path:
    """Motion correction, CTF, picking and extraction of one batch of movies; each
    micrograph the preprocessing cache under `cache_root` holds is not computed again
    (:mod:`foldstack.cryoem.cache`; empty: no cache)."""
    request, run = load_run(scratch, run_id)
    names = (run.get("batches") or {}).get(batch)
    if not names:
        raise BadInputError(f"run {run_id} has no batch {batch!r}")
    movies = [m for m in request.movies if m.name in set(names)]
    if len(movies) != len(names):
        raise BadInputError(f"batch {batch}: {len(names) - len(movies)} of its movies are not staged")
    return preprocess.preprocess_movies(scratch, run_id, batch, request, movies, _knobs(run), cache_root)["extract"]


def curate(scratch: Path, run_id: str) -> Path:
    request, run = load_run(scratch, run_id)
    return refine.curate(scratch, run_id, sorted(run["batches"]), request, _knobs(run))


def gpu_stage(stage_name: str, scratch: Path, run_id: str, name: str = "") -> Path:
    """2D classification, the initial model or 3D refinement; `name` ``<stage>_guard``:
    the bias guard's (from the reference filtered to ``guard_lowpass``)."""
    if stage_name not in GPU_STAGES:
        raise BadInputError(f"unknown GPU stage {stage_name!r}; expected one of {', '.join(GPU_STAGES)}")
    if name not in ("", stage_name, stage_name + GUARD) or (stage_name == "class2d" and name.endswith(GUARD)):
        raise BadInputError(f"stage {stage_name}: --name {name!r} is not {stage_name!r} or {stage_name + GUARD!r}")
    request, run = load_run(scratch, run_id)
    knobs, guard = _knobs(run), name.endswith(GUARD)
    if guard and request.reference is None:
        raise BadInputError(f"stage {name}: the bias guard needs the request's reference")
    if stage_name == "class2d":
        return refine.class2d(scratch, run_id, request, knobs)
    if stage_name == "initial_model":
        if guard and knobs.guard_denovo:  # a start that owes nothing to the reference
            return refine.initial_model(scratch, run_id, request, knobs, name=name, reference=None)
        if guard:
            return refine.initial_model(scratch, run_id, request, knobs, name=name, reference=request.reference,
                                        lowpass=knobs.guard_lowpass)
        return refine.initial_model(scratch, run_id, request, knobs, reference=request.reference)
    if guard:
        return refine.refine3d(scratch, run_id, request, name=name, initial="initial_model" + GUARD,
                               ini_high=guard_ini_high(knobs))
    return refine.refine3d(scratch, run_id, request)


def guard_ini_high(knobs: Knobs) -> float:
    """The guard refinement's initial low-pass: the harder filter of its reference start,
    or auto-refine's usual 40 Å from a de novo start."""
    return 40.0 if knobs.guard_denovo else knobs.guard_lowpass


def postprocess(scratch: Path, run_id: str) -> Path:
    """Post-processing, the bias guard's comparison, then the assembled results."""
    request, run = load_run(scratch, run_id)
    knobs = _knobs(run)
    refine.postprocess(scratch, run_id, request, knobs)
    guard_result = None
    if run.get("bias_guard"):
        guard_result = bias_guard(stage_dir(scratch, run_id, "refine3d", ALL),
                                  stage_dir(scratch, run_id, "refine3d" + GUARD, ALL), request.optics.pixel_size,
                                  same_frame=not knobs.guard_denovo)
        if guard_result["flagged"]:
            log("bias_guard", ALL, f"FLAGGED: refinements from two starts agree only to "
                f"{guard_result['cross_resolution_fsc_0.143']} Å; the reference may have biased the result")
    dirs = StageDirs.of_run(scratch, run_id)
    movies = run["request"]["movies"]

    def body(ctx: StepContext) -> None:
        summary = assemble_results(ctx.work_dir, movies if isinstance(movies, str) else f"{len(movies)} movies",
                                   run_id, request, knobs, stage_records(ctx.run_dir), dirs, guard_result,
                                   size_class=run.get("size_class"))
        write_json(ctx.work_dir / "summary.json", summary)

    return stage(RESULTS_STAGE, run_id, ALL, scratch, body)
