"""Whole-dataset stages (target ``all``): curate → 2D classification and selection →
initial model → 3D auto-refine (gold-standard halves) → mask and post-process.

Each is one future GPU/CPU Batch job; here RELION 3.1's CPU programs run them
(``relion_refine``, ``relion_mask_create``, ``relion_postprocess``), threads capped by
:func:`foldstack.cryoem.relion.threads`.
"""

from __future__ import annotations

import glob
import math
import re
from pathlib import Path

import numpy as np

from foldstack.core.errors import BadInputError
from foldstack.cryoem import ctffind
from foldstack.cryoem.mrc import read_mrc, write_mrc
from foldstack.cryoem.relion import mpi_refine, relion_version, run_relion, threads
from foldstack.cryoem.request import CryoemRequest
from foldstack.cryoem.stagekit import ALL, Knobs, link_inputs, read_json, save_request, stage, stage_dir, write_json
from foldstack.cryoem.star import StarBlock, read_star, write_star
from foldstack.steps.common import StepContext


def _stacks(particles: Path) -> list[str]:
    names = {row["rlnImageName"].split("@", 1)[1] for row in _particles(particles).records()}
    return sorted(names)


def _particles(path: Path) -> StarBlock:
    blocks = read_star(path)
    if "particles" not in blocks:
        raise BadInputError(f"{path}: no data_particles block")
    return blocks["particles"]


def curate(scratch: Path, run_id: str, batches: list[str], request: CryoemRequest, knobs: Knobs) -> Path:
    sources = {b: stage_dir(scratch, run_id, "extract", b) for b in batches}

    def body(ctx: StepContext) -> None:
        save_request(ctx, request)
        kept_mics, decisions, optics, rows, columns = set(), [], None, [], None
        for batch, src in sources.items():
            # hit | miss | off per micrograph: the preprocessing cache's (foldstack.cryoem.cache)
            cached = read_json(src / "cache.json")["micrographs"] if (src / "cache.json").is_file() else {}
            for q in read_json(src / "qc.json"):
                reasons = []
                if q["total_drift_px"] > knobs.max_drift_px:
                    reasons.append(f"drift {q['total_drift_px']:.1f} px > {knobs.max_drift_px:g}")
                if q["ctf_resolution"] > knobs.max_ctf_resolution:
                    reasons.append(f"CTF fit {q['ctf_resolution']:.1f} Å > {knobs.max_ctf_resolution:g}")
                fom_floor = ctffind.fom_floor(q.get("ctf_estimator"), knobs)  # by the estimator's scale
                if q["ctf_fom"] < fom_floor:
                    reasons.append(f"CTF FOM {q['ctf_fom']:.2f} < {fom_floor:g}")
                if q["particles"] < knobs.min_particles:
                    reasons.append(f"{q['particles']} particles < {knobs.min_particles}")
                decisions.append({**q, "batch": batch, "cache": cached.get(q["micrograph"], "off"), "kept": not reasons,
                                  "reasons": reasons})
                if not reasons:
                    kept_mics.add(q["micrograph"])
            blocks = read_star(src / "particles.star")
            optics = optics or blocks["optics"]
            part = blocks["particles"]
            columns = columns or part.columns
            if part.columns != columns:
                raise BadInputError(f"{src / 'particles.star'}: columns differ from the other batches")
            for rec in part.rows:
                name = Path(rec[columns.index("rlnMicrographName")]).name.split(".")[0]
                if name in kept_mics:
                    rows.append(rec)
        if not rows:
            raise BadInputError("curation kept no particles: every micrograph failed the QC thresholds "
                                f"({knobs.to_json()})")
        assert optics is not None and columns is not None
        merged = StarBlock("particles", columns=columns, rows=rows)
        write_star(ctx.work_dir / "particles.star", [optics, merged])
        for src in sources.values():
            mine = {r["rlnImageName"].split("@", 1)[1] for r in _particles(src / "particles.star").records()}
            link_inputs(ctx, src, sorted(n for n in mine if Path(n).name.split(".")[0] in kept_mics))
        write_json(ctx.work_dir / "curation.json", {"knobs": knobs.to_json(), "micrographs": decisions,
                                                     "particles": len(rows)})

    return stage("curate", run_id, ALL, scratch, body)


def _last(pattern: str, cwd: Path) -> Path:
    found = sorted(glob.glob(str(cwd / pattern)))
    if not found:
        raise BadInputError(f"RELION wrote no {pattern} in {cwd}")
    return Path(found[-1])


def _common_refine_args(request: CryoemRequest, threads_each: int | None = None, oversampling: int = 1) -> list[str]:
    return ["--particle_diameter", f"{request.particle_diameter:g}", "--ctf", "--zero_mask",
            "--oversampling", str(oversampling),
            "--norm", "--scale", "--j", str(threads_each or threads()), "--pool", "30",
            "--dont_combine_weights_via_disc"]


FAST_SUBSET_MIN_ITERATIONS = 20  # relion_refine refuses --fast_subsets with fewer iterations


def class2d_speed_args(knobs: Knobs) -> list[str]:
    """The 2D classification's speed knobs as ``relion_refine`` options. Fast subsets
    (iterations 1-5 on K x 100 random particles, 6-10 on K x 300, 11-15 on 30 %, then
    every particle, so the selection reads each particle's class from a full iteration)
    only with the iterations RELION requires for them."""
    args: list[str] = []
    if knobs.fast_subsets_2d and knobs.iter_2d >= FAST_SUBSET_MIN_ITERATIONS:
        args.append("--fast_subsets")
    if knobs.maxsig_2d > 0:
        args += ["--maxsig", str(knobs.maxsig_2d)]
    if knobs.max_resolution_2d > 0:
        args += ["--strict_highres_exp", f"{knobs.max_resolution_2d:g}"]
    return args


def denovo_args(knobs: Knobs) -> list[str]:
    """The de novo SGD's options (``relion_refine --denovo_3dref --sgd``) from the knobs."""
    it, subset, resol = str(knobs.denovo_iter), str(knobs.denovo_subset), f"{knobs.denovo_resolution:g}"
    return ["--healpix_order", "1", "--offset_range", f"{knobs.denovo_offset_range:g}", "--offset_step", "2",
            "--sgd_ini_iter", it, "--sgd_inbetween_iter", it, "--sgd_fin_iter", it,
            "--sgd_ini_resol", resol, "--sgd_fin_resol", resol, "--sgd_ini_subset", subset, "--sgd_fin_subset", subset]


def class2d(scratch: Path, run_id: str, request: CryoemRequest, knobs: Knobs) -> Path:
    source = stage_dir(scratch, run_id, "curate", ALL)

    def body(ctx: StepContext) -> None:
        save_request(ctx, request)
        link_inputs(ctx, source, ["particles.star", *_stacks(source / "particles.star")])
        (ctx.work_dir / "Class2D").mkdir()
        with ctx.timer("relion_refine"):
            run_relion(["relion_refine", "--i", "particles.star", "--o", "Class2D/run", "--K", str(knobs.classes_2d),
                        "--iter", str(knobs.iter_2d), "--tau2_fudge", "2", "--flatten_solvent", "--psi_step", "12",
                        "--offset_range", f"{knobs.offset_range_2d:g}", "--offset_step", "2",
                        *class2d_speed_args(knobs), *_common_refine_args(request)],
                       cwd=ctx.work_dir, log=ctx.work_dir / "class2d.log")
        model = read_star(_last("Class2D/run_it*_model.star", ctx.work_dir))["model_classes"].records()
        data_path = _last("Class2D/run_it*_data.star", ctx.work_dir)
        blocks = read_star(data_path)
        classes = []
        for i, row in enumerate(model, 1):
            classes.append({"class": i, "fraction": float(row["rlnClassDistribution"]),
                            "resolution": float(row["rlnEstimatedResolution"])})
        best = min(c["resolution"] for c in classes if c["fraction"] >= knobs.min_class_fraction)
        for c in classes:
            c["selected"] = (c["fraction"] >= knobs.min_class_fraction
                             and c["resolution"] <= knobs.max_class_resolution_ratio * best)
        chosen = {str(c["class"]) for c in classes if c["selected"]}
        part = blocks["particles"]
        rows = [r for r in part.rows if r[part.columns.index("rlnClassNumber")] in chosen]
        write_star(ctx.work_dir / "particles_selected.star",
                   [blocks["optics"], StarBlock("particles", columns=part.columns, rows=rows)])
        write_json(ctx.work_dir / "selection.json", {"classes": classes, "particles_in": len(part.rows),
                                                      "particles_selected": len(rows)})
        _drop_intermediate(ctx.work_dir / "Class2D", keep=data_path.name.split("_data")[0])
        ctx.tool_versions["relion"] = relion_version()

    return stage("class2d", run_id, ALL, scratch, body)


def _drop_intermediate(folder: Path, keep: str) -> None:
    """Keep only the last iteration's files (`keep` prefix), so outputs stay small."""
    for f in folder.iterdir():
        if re.match(r"run_it\d+", f.name) and not f.name.startswith(keep):
            f.unlink()


def _reference_map(request: CryoemRequest, reference: Path, box: int) -> np.ndarray:
    name = reference.name.lower()
    if name.endswith((".mrc", ".map")):
        data = read_mrc(reference)
        if data.shape != (box, box, box):
            raise BadInputError(f"reference map {reference} is {data.shape}, expected {box}^3 (the box size)")
        return data
    from foldstack.cryoem.simulate import density_map  # an atomic model: its density, as the simulator makes it

    return density_map(reference, box, request.optics.pixel_size)


def initial_model(scratch: Path, run_id: str, request: CryoemRequest, knobs: Knobs, *, name: str = "initial_model",
                  reference: Path | None = None, lowpass: float | None = None) -> Path:
    """De novo (``relion_refine --denovo_3dref --sgd``) or a supplied map/model low-pass
    filtered (``relion_image_handler --lowpass``); writes ``initial_model.mrc``."""
    source = stage_dir(scratch, run_id, "class2d", ALL)
    px = request.optics.pixel_size

    def body(ctx: StepContext) -> None:
        save_request(ctx, request)
        info: dict[str, object] = {}
        if reference is not None:
            ctx.record_input(reference)
            write_mrc(ctx.work_dir / "reference_full.mrc", _reference_map(request, reference, request.box_size), px)
            cutoff = lowpass or knobs.reference_lowpass
            with ctx.timer("relion_image_handler"):
                run_relion(["relion_image_handler", "--i", "reference_full.mrc", "--o", "initial_model.mrc",
                            "--lowpass", f"{cutoff:g}", "--angpix", str(px)], cwd=ctx.work_dir,
                           log=ctx.work_dir / "initial_model.log")
            (ctx.work_dir / "reference_full.mrc").unlink()
            info = {"mode": "reference", "reference": str(reference), "lowpass": cutoff}
        else:
            link_inputs(ctx, source, ["particles_selected.star", *_stacks(source / "particles_selected.star")])
            (ctx.work_dir / "InitialModel").mkdir()
            with ctx.timer("relion_refine"):
                run_relion(["relion_refine", "--i", "particles_selected.star", "--o", "InitialModel/run",
                            "--denovo_3dref", "--sgd", "--K", "1", "--sym", request.symmetry, *denovo_args(knobs),
                            # no oversampling: 30x fewer poses; SGD only needs a coarse, 30-degree model
                            *_common_refine_args(request, oversampling=0)],
                           cwd=ctx.work_dir, log=ctx.work_dir / "initial_model.log")
            last = _last("InitialModel/run_it*_class001.mrc", ctx.work_dir)
            write_mrc(ctx.work_dir / "initial_model.mrc", read_mrc(last), px)
            for f in (ctx.work_dir / "InitialModel").iterdir():
                f.unlink()
            (ctx.work_dir / "InitialModel").rmdir()
            for f in (ctx.work_dir / "particles_selected.star", *ctx.work_dir.joinpath("Particles").rglob("*.mrcs")):
                f.unlink()
            info = {"mode": "denovo", "iterations": 3 * knobs.denovo_iter, "resolution": knobs.denovo_resolution}
        write_json(ctx.work_dir / "initial_model.json", info)
        ctx.tool_versions["relion"] = relion_version()

    return stage(name, run_id, ALL, scratch, body)


def refine3d(scratch: Path, run_id: str, request: CryoemRequest, *, name: str = "refine3d",
             initial: str = "initial_model", ini_high: float = 40.0) -> Path:
    """3D auto-refine with gold-standard half sets from `initial`'s ``initial_model.mrc``."""
    particles_src = stage_dir(scratch, run_id, "class2d", ALL)
    initial_src = stage_dir(scratch, run_id, initial, ALL)

    def body(ctx: StepContext) -> None:
        save_request(ctx, request)
        selected = particles_src / "particles_selected.star"
        link_inputs(ctx, particles_src, ["particles_selected.star", *_stacks(selected)])
        link_inputs(ctx, initial_src, ["initial_model.mrc"])
        (ctx.work_dir / "Refine3D").mkdir()
        with ctx.timer("relion_refine"):
            run_relion([*mpi_refine(), "--i", "particles_selected.star", "--o", "Refine3D/run", "--auto_refine",
                        "--split_random_halves", "--ref", "initial_model.mrc", "--firstiter_cc", "--ini_high",
                        f"{ini_high:g}", "--sym", request.symmetry, "--flatten_solvent", "--healpix_order", "2",
                        # local searches from 7.5 degrees and at most 500 poses per particle in the fine
                        # pass, and the sampling refined without waiting for orientations to settle:
                        # what keeps a CPU refinement to minutes (2D classification already centred them)
                        "--auto_local_healpix_order", "3", "--offset_range", "3", "--offset_step", "1.5",
                        "--maxsig", "500", "--auto_ignore_angles",
                        "--low_resol_join_halves", "40", *_common_refine_args(request, threads_each=1)],
                       cwd=ctx.work_dir, log=ctx.work_dir / "refine3d.log")
        _drop_intermediate(ctx.work_dir / "Refine3D", keep="run_it999")
        for f in ctx.work_dir.joinpath("Particles").rglob("*.mrcs"):
            f.unlink()  # the stacks stay in class2d; the STAR files here name them relative to there
        model = read_star(ctx.work_dir / "Refine3D" / "run_model.star")["model_general"].pairs
        write_json(ctx.work_dir / "refine3d.json", {
            "gold_standard_resolution": float(model["rlnCurrentResolution"]),
            "particles": len(_particles(ctx.work_dir / "Refine3D" / "run_data.star").rows)})
        ctx.tool_versions["relion"] = relion_version()

    return stage(name, run_id, ALL, scratch, body)


def postprocess(scratch: Path, run_id: str, request: CryoemRequest, knobs: Knobs, *, refine: str = "refine3d",
                name: str = "postprocess") -> Path:
    """Mask from the refined map (threshold enclosing the expected protein volume,
    extended and soft-edged) and ``relion_postprocess`` (FSC, 0.143, B-factor)."""
    source = stage_dir(scratch, run_id, refine, ALL)
    px, box = request.optics.pixel_size, request.box_size
    files = ["Refine3D/run_class001.mrc", "Refine3D/run_half1_class001_unfil.mrc",
             "Refine3D/run_half2_class001_unfil.mrc"]

    def body(ctx: StepContext) -> None:
        save_request(ctx, request)
        link_inputs(ctx, source, files)
        refined = read_mrc(ctx.work_dir / files[0])
        sphere = 4 / 3 * math.pi * (request.particle_diameter / px / 2) ** 3
        fraction = min(0.5, knobs.mask_protein_fraction * sphere / box**3)
        threshold = float(np.quantile(refined, 1 - fraction))
        with ctx.timer("relion_mask_create"):
            run_relion(["relion_mask_create", "--i", files[0], "--o", "mask.mrc", "--ini_threshold", f"{threshold:.6g}",
                        "--extend_inimask", "3", "--width_soft_edge", "6", "--lowpass", "15", "--angpix", str(px),
                        "--j", str(threads())], cwd=ctx.work_dir, log=ctx.work_dir / "postprocess.log")
        (ctx.work_dir / "PostProcess").mkdir()  # RELION writes its logfile.pdf next to the output root
        fit_from = max(10.0, 4 * px)
        sharpen = ["--auto_bfac", "--autob_lowres", f"{fit_from:g}"]
        for attempt in range(2):
            with ctx.timer("relion_postprocess"):
                run_relion(["relion_postprocess", "--i", files[1], "--i2", files[2], "--mask", "mask.mrc", "--angpix",
                            str(px), *sharpen, "--o", "PostProcess/postprocess"], cwd=ctx.work_dir,
                           log=ctx.work_dir / "postprocess.log")
            blocks = read_star(ctx.work_dir / "PostProcess" / "postprocess.star")
            general = blocks["general"].pairs
            if attempt or float(general["rlnFinalResolution"]) < fit_from:
                break
            # no shells between the fit's low-resolution end and the resolution: a Guinier fit
            # there is noise (thousands of Å^2), so sharpen with none instead
            sharpen = ["--adhoc_bfac", "0"]
        for name in ("logfile.pdf", "logfile.pdf.lst"):  # empty without ghostscript; the PNG plot replaces it
            (ctx.work_dir / "PostProcess" / name).unlink(missing_ok=True)
        fsc = blocks["fsc"]
        curve = [{"resolution_angstrom": float(r["rlnAngstromResolution"]),
                  "fsc_corrected": float(r["rlnFourierShellCorrelationCorrected"]),
                  "fsc_unmasked": float(r["rlnFourierShellCorrelationUnmaskedMaps"]),
                  "fsc_masked": float(r["rlnFourierShellCorrelationMaskedMaps"])} for r in fsc.records()]
        lines = ["resolution_angstrom\tfsc_corrected\tfsc_unmasked\tfsc_masked"]
        lines += [f"{c['resolution_angstrom']:.3f}\t{c['fsc_corrected']:.4f}\t{c['fsc_unmasked']:.4f}\t"
                  f"{c['fsc_masked']:.4f}" for c in curve[1:]]
        (ctx.work_dir / "fsc.tsv").write_text("\n".join(lines) + "\n")
        write_json(ctx.work_dir / "postprocess.json", {
            "resolution": float(general["rlnFinalResolution"]),
            "bfactor": float(general.get("rlnBfactorUsedForSharpening", "nan")),
            "bfactor_fitted": sharpen[0] == "--auto_bfac",
            "mask_threshold": threshold})
        for f in files:
            (ctx.work_dir / f).unlink()
        (ctx.work_dir / "Refine3D").rmdir()
        ctx.tool_versions["relion"] = relion_version()

    return stage(name, run_id, ALL, scratch, body)
