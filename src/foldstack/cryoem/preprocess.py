"""Per-micrograph-batch preprocessing stages: motion correction, CTF estimation,
picking, extraction (each one future CPU Batch job over a batch of movies).

* ``motioncorr``: RELION's own implementation (``relion_run_motioncorr --use_own``),
  global alignment, dose weighting. QC: per-frame shifts and total drift (px).
* ``ctf``: CTFFIND 4.1 (:mod:`foldstack.cryoem.ctffind`) where the image has it, else
  :mod:`foldstack.cryoem.ctf`, on each dose-weighted sum (never the truth). QC: mean defocus,
  DefocusU/V and angle, fit resolution (Å), figure of merit, which estimator ran.
* ``pick``: RELION's Laplacian-of-Gaussian picker (``relion_autopick --LoG``) between
  0.7 and 1.1 particle diameters. QC: picks per micrograph.
* ``extract``: ``relion_preprocess --extract`` (box size, normalised, contrast inverted:
  protein is dark in the micrographs). Writes ``particles.star`` and ``qc.json`` (one
  row per micrograph: drift, CTF, picks), what ``curate`` reads.

:func:`preprocess_movies` runs the four over a batch with the per-micrograph cache
(:mod:`foldstack.cryoem.cache`): the first three on the movies it does not hold, and
``extract`` joins computed and cached micrographs (``cache.json``: hit | miss | off each).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from foldstack.core.errors import BadInputError
from foldstack.cryoem import ctf as ctf_model
from foldstack.cryoem import ctffind
from foldstack.cryoem.cache import HIT, MISS, OFF, Entry, PreprocessCache, check_relpath, open_cache
from foldstack.cryoem.mrc import movie_header, read_mrc
from foldstack.cryoem.relion import relion_version, run_relion, threads
from foldstack.cryoem.request import CryoemRequest
from foldstack.cryoem.stagekit import (
    Knobs,
    link_inputs,
    micrograph_optics,
    read_json,
    save_request,
    stage,
    stage_dir,
    star_rows,
    write_json,
)
from foldstack.cryoem.star import StarBlock, read_star, table, write_star
from foldstack.steps.common import StepContext, load_valid_done, log

MOVIES = "Movies"
MOTION_DIR = f"MotionCorr/{MOVIES}"  # where motion correction writes the sums (the STAR rows name it)


def _mic_name(movie: Path) -> str:
    return movie.name.split(".")[0]


def motioncorr(scratch: Path, run_id: str, batch: str, request: CryoemRequest, movies: list[Path]) -> Path:
    def body(ctx: StepContext) -> None:
        save_request(ctx, request)
        (ctx.work_dir / MOVIES).mkdir()
        rows = []
        for movie in movies:
            link = ctx.work_dir / MOVIES / movie.name
            link.symlink_to(movie)  # read in place; removed before the attempt is promoted
            ctx.record_input(movie)
            rows.append({"rlnMicrographMovieName": f"{MOVIES}/{movie.name}", "rlnOpticsGroup": 1})
        optics = micrograph_optics(request.optics)
        write_star(ctx.work_dir / "movies.star", [optics, table("movies", rows)])
        o = request.optics
        with ctx.timer("relion_run_motioncorr"):
            run_relion(["relion_run_motioncorr", "--i", "movies.star", "--o", "MotionCorr/", "--use_own",
                        "--j", str(threads()), "--dose_weighting", "--angpix", str(o.pixel_size),
                        "--voltage", str(o.voltage_kv), "--dose_per_frame", str(o.dose_per_frame),
                        "--skip_defect", "--bfactor", "150"], cwd=ctx.work_dir, log=ctx.work_dir / "motioncorr.log")
        for link in (ctx.work_dir / MOVIES).iterdir():
            link.unlink()
        (ctx.work_dir / MOVIES).rmdir()
        (ctx.work_dir / "MotionCorr" / "logfile.pdf").unlink(missing_ok=True)  # empty: no ghostscript here
        qc = {}
        for movie in movies:
            name = _mic_name(movie)
            shifts = global_shifts(ctx.work_dir / "MotionCorr" / MOVIES / f"{name}.star")
            qc[name] = {"micrograph": f"MotionCorr/{MOVIES}/{name}.mrc", "shifts_px": shifts.round(3).tolist(),
                        "total_drift_px": round(float(np.linalg.norm(shifts - shifts[0], axis=1).max()), 3)}
        write_json(ctx.work_dir / "motion_qc.json", qc)
        ctx.tool_versions["relion"] = relion_version()

    return stage("motioncorr", run_id, batch, scratch, body)


def global_shifts(path: Path) -> np.ndarray:
    """Per-frame specimen displacement (x, y) in px relative to frame 1, from RELION's
    per-movie STAR (RELION records the shift that re-aligns a frame: the negative)."""
    rows = star_rows(path, "global_shift")
    shifts = np.array([[float(r["rlnMicrographShiftX"]), float(r["rlnMicrographShiftY"])] for r in rows])
    return -(shifts - shifts[0])


def estimate_ctf(scratch: Path, run_id: str, batch: str, request: CryoemRequest, knobs: Knobs | None = None) -> Path:
    """CTF estimation of every dose-weighted sum of a batch: CTFFIND where the image has it,
    foldstack's own estimator otherwise (knob ``ctf_estimator``); the same record either way."""
    knobs = knobs or Knobs()
    source = stage_dir(scratch, run_id, "motioncorr", batch)
    motion = read_json(source / "motion_qc.json")
    estimator, binary = ctffind.choose(knobs.ctf_estimator)

    def body(ctx: StepContext) -> None:
        save_request(ctx, request)
        link_inputs(ctx, source, [m["micrograph"] for m in motion.values()])
        o = request.optics
        rows, qc, version = [], {}, ""
        for name, m in motion.items():
            with ctx.timer("estimate"):
                if binary is None:
                    fit = ctf_model.estimate_micrograph(read_mrc(ctx.work_dir / m["micrograph"]), o.pixel_size,
                                                        voltage_kv=o.voltage_kv, cs_mm=o.cs_mm,
                                                        amplitude_contrast=o.amplitude_contrast,
                                                        defocus_min=knobs.ctf_defocus_min,
                                                        defocus_max=knobs.ctf_defocus_max)
                else:
                    params = _ctffind_params(request, knobs, ctx.work_dir / m["micrograph"])
                    result = ctffind.run_ctffind(binary, m["micrograph"], params, cwd=ctx.work_dir, out_dir=CTFFIND_DIR,
                                                 log=ctx.work_dir / "ctffind.log")
                    fit, version = result.to_fit(params.min_resolution), result.version
            # extraction copies these columns to every particle, and refinement corrects each
            # particle with its micrograph's astigmatic CTF
            rows.append({"rlnMicrographName": m["micrograph"], "rlnOpticsGroup": 1,
                         "rlnDefocusU": round(fit.defocus_u, 2), "rlnDefocusV": round(fit.defocus_v, 2),
                         "rlnDefocusAngle": round(fit.defocus_angle, 3), "rlnCtfAstigmatism": round(fit.astigmatism, 2),
                         "rlnCtfFigureOfMerit": fit.figure_of_merit, "rlnCtfMaxResolution": fit.max_resolution})
            qc[name] = {"defocus": round(fit.defocus, 1), "defocus_u": round(fit.defocus_u, 1),
                        "defocus_v": round(fit.defocus_v, 1), "defocus_angle": round(fit.defocus_angle, 2),
                        "ctf_fom": round(fit.figure_of_merit, 4), "ctf_resolution": round(fit.max_resolution, 2),
                        "ctf_estimator": estimator}
        write_star(ctx.work_dir / "micrographs_ctf.star", [micrograph_optics(o), table("micrographs", rows)])
        write_json(ctx.work_dir / "ctf_qc.json", qc)
        ctx.tool_versions["ctf_estimator"] = (
            f"ctffind {version or 'unknown'} ({binary})" if binary else
            "foldstack.cryoem.ctf (1-D fit, 2-D astigmatism refinement)")

    return stage("ctf", run_id, batch, scratch, body)


def _single_frame(micrograph: Path) -> tuple[int, int]:
    """(ny, nx) of a motion-corrected sum: one frame (CTFFIND asks more about a stack)."""
    header = movie_header(micrograph)
    if header.frames != 1:
        raise BadInputError(f"{micrograph.name}: {header.frames} frames, expected one motion-corrected sum")
    return header.ny, header.nx


CTFFIND_DIR = "CtfFind"  # CTFFIND's diagnostic spectra and summaries, one pair per micrograph


def _ctffind_params(request: CryoemRequest, knobs: Knobs, micrograph: Path) -> ctffind.CtffindParams:
    o = request.optics
    return ctffind.params_for(pixel_size=o.pixel_size, voltage_kv=o.voltage_kv, cs_mm=o.cs_mm,
                              amplitude_contrast=o.amplitude_contrast, box=knobs.ctffind_box,
                              min_resolution=knobs.ctffind_min_resolution,
                              max_resolution=knobs.ctffind_max_resolution, defocus_min=knobs.ctf_defocus_min,
                              defocus_max=knobs.ctf_defocus_max, astigmatism_tolerance=knobs.ctffind_astigmatism,
                              shape=_single_frame(micrograph))


def _micrograph_files(star: Path) -> list[str]:
    return [r["rlnMicrographName"] for r in star_rows(star, "micrographs")]


def pick(scratch: Path, run_id: str, batch: str, request: CryoemRequest, knobs: Knobs) -> Path:
    source = stage_dir(scratch, run_id, "ctf", batch)
    mics = _micrograph_files(source / "micrographs_ctf.star")

    def body(ctx: StepContext) -> None:
        save_request(ctx, request)
        link_inputs(ctx, source, ["micrographs_ctf.star", *mics])
        d = request.particle_diameter
        with ctx.timer("relion_autopick"):
            run_relion(["relion_autopick", "--i", "micrographs_ctf.star", "--odir", "Picks/", "--pickname", "autopick",
                        "--LoG", "--LoG_diam_min", f"{0.7 * d:.1f}", "--LoG_diam_max", f"{1.1 * d:.1f}",
                        "--LoG_adjust_threshold", f"{knobs.pick_threshold:g}",
                        "--angpix", str(request.optics.pixel_size), "--shrink", "0", "--lowpass", "20",
                        "--j", str(threads())], cwd=ctx.work_dir, log=ctx.work_dir / "autopick.log")
        for mic in mics:  # the micrographs were inputs; extract links them again
            (ctx.work_dir / mic).unlink()
        picks = {}
        for mic in mics:
            picks[_mic_name(Path(mic))] = len(read_picks(ctx.work_dir, mic))
        write_json(ctx.work_dir / "pick_qc.json", picks)
        ctx.tool_versions["relion"] = relion_version()

    return stage("pick", run_id, batch, scratch, body)


def read_picks(pick_dir: Path, micrograph: str) -> np.ndarray:
    """(x, y) of the picks in one micrograph (px)."""
    coords = pick_dir / "Picks" / (str(Path(micrograph).with_suffix("")) + "_autopick.star")
    block = read_star(coords).get("") if coords.is_file() else None  # RELION writes an unnamed data_ block
    if block is None or not block.rows:
        return np.zeros((0, 2))
    return np.array([block.floats("rlnCoordinateX"), block.floats("rlnCoordinateY")]).T


def extract(scratch: Path, run_id: str, batch: str, request: CryoemRequest, movies: list[Path] | None = None, *,
            hits: dict[str, Entry] | None = None, store: PreprocessCache | None = None,
            keys: dict[str, str] | None = None) -> Path:
    """Extraction of the micrographs the earlier stages processed, joined with the cached
    ones (`hits`, for `movies` not processed): ``particles.star`` and ``qc.json`` in the
    movies' order, each computed micrograph stored in `store` under `keys`, and
    ``cache.json`` (hit | miss | off per micrograph). Without `movies`: every micrograph
    of the CTF stage."""
    hits, keys = hits or {}, keys or {}
    names = [_mic_name(m) for m in movies] if movies is not None else None
    computed = names is None or any(n not in hits for n in names)
    if computed:
        mc, ctf_dir, pick_dir = (stage_dir(scratch, run_id, s, batch) for s in ("motioncorr", "ctf", "pick"))
        mics = _micrograph_files(ctf_dir / "micrographs_ctf.star")
        coords = [str(p.relative_to(pick_dir)) for p in sorted((pick_dir / "Picks").rglob("*_autopick.star"))]

    def body(ctx: StepContext) -> None:
        save_request(ctx, request)
        fresh: dict[str, Entry] = {}
        if computed:
            link_inputs(ctx, ctf_dir, ["micrographs_ctf.star", *mics])
            link_inputs(ctx, pick_dir, coords)
            box = request.box_size
            radius = int(0.75 * box / 2)  # RELION's default: 75 % of half the box
            with ctx.timer("relion_preprocess"):
                run_relion(["relion_preprocess", "--i", "micrographs_ctf.star", "--coord_dir", "Picks/",
                            "--coord_suffix", "_autopick.star", "--part_star", "particles.star", "--part_dir",
                            "Particles/", "--extract", "--extract_size", str(box), "--norm", "--bg_radius",
                            str(radius), "--invert_contrast"], cwd=ctx.work_dir, log=ctx.work_dir / "extract.log")
            for name in (*mics, "micrographs_ctf.star"):  # inputs: a cached batch has none of them
                (ctx.work_dir / name).unlink()
            fresh = _computed_entries(ctx.work_dir, mc, ctf_dir, pick_dir)
        statuses: dict[str, str] = {}
        for name in names if names is not None else list(fresh):
            if name in fresh:
                statuses[name] = MISS if store is not None and name in keys else OFF
                if statuses[name] == MISS and store is not None:
                    store.put(keys[name], fresh[name], run_id)
            elif name in hits:
                _restore(ctx.work_dir, hits[name])
                statuses[name] = HIT
            else:
                raise BadInputError(f"batch {batch}: micrograph {name} was neither preprocessed nor cached")
        entries = [fresh.get(name) or hits[name] for name in statuses]
        if not any(e.rows for e in entries):
            raise BadInputError(f"no particles were extracted in batch {batch} (the picker found none)")
        write_star(ctx.work_dir / "particles.star", _joined_particles(entries))
        write_json(ctx.work_dir / "qc.json", [e.qc for e in entries])
        write_json(ctx.work_dir / "cache.json", {"micrographs": statuses})
        ctx.tool_versions["relion"] = relion_version()

    return stage("extract", run_id, batch, scratch, body)


def mic_files(name: str) -> list[str]:
    """One micrograph's files in the extract folder (RELION's layout under the paths the
    earlier stages gave it): its particle stack and STAR, its picks."""
    return [f"Particles/{MOTION_DIR}/{name}.mrcs", f"Particles/{MOTION_DIR}/{name}_extract.star",
            f"Picks/{MOTION_DIR}/{name}_autopick.star"]


def _computed_entries(work: Path, mc: Path, ctf_dir: Path, pick_dir: Path) -> dict[str, Entry]:
    """Every micrograph extraction just processed, as cache entries (in the CTF stage's order)."""
    motion, ctfq, picks = (read_json(d / n) for d, n in ((mc, "motion_qc.json"), (ctf_dir, "ctf_qc.json"),
                                                          (pick_dir, "pick_qc.json")))
    optics: dict[str, Any] = {"columns": [], "rows": []}
    columns: list[str] = []
    rows: dict[str, list[list[str]]] = {}
    if (work / "particles.star").is_file():  # absent when no micrograph of these had a pick
        blocks = read_star(work / "particles.star")
        optics = {"columns": list(blocks["optics"].columns), "rows": [list(r) for r in blocks["optics"].rows]}
        part = blocks["particles"]
        columns = part.columns
        where = columns.index("rlnMicrographName")
        for row in part.rows:
            rows.setdefault(_mic_name(Path(row[where])), []).append(list(row))
    entries = {}
    for name in motion:
        files = {rel: (work / rel).read_bytes() for rel in mic_files(name) if (work / rel).is_file()}
        qc = {"micrograph": name, "total_drift_px": motion[name]["total_drift_px"], **ctfq[name],
              "picks": picks.get(name, 0), "particles": len(rows.get(name, []))}
        entries[name] = Entry(name, list(columns), rows.get(name, []), optics, qc, files)
    return entries


def _restore(work: Path, entry: Entry) -> None:
    """A cached micrograph's files into the attempt folder (paths checked to stay in it)."""
    root = work.resolve()
    for rel, data in sorted(entry.files.items()):
        dest = (work / check_relpath(rel)).resolve()
        if root not in dest.parents:
            raise BadInputError(f"cache entry of {entry.micrograph}: {rel!r} leaves the stage folder")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def _joined_particles(entries: list[Entry]) -> list[StarBlock]:
    """The batch's particles.star: the optics block and every micrograph's rows, in order
    (computed or cached alike, so a cached batch writes the same bytes)."""
    with_rows = [e for e in entries if e.rows]
    first = with_rows[0]
    for e in with_rows:
        if e.columns != first.columns or e.optics != first.optics:
            raise BadInputError(f"micrograph {e.micrograph}: particle columns or optics differ from "
                                f"{first.micrograph}'s (mixed RELION outputs)")
    return [StarBlock("optics", columns=first.optics["columns"], rows=first.optics["rows"]),
            StarBlock("particles", columns=first.columns, rows=[row for e in with_rows for row in e.rows])]


def preprocess_movies(scratch: Path, run_id: str, batch: str, request: CryoemRequest, movies: list[Path],
                      knobs: Knobs, cache_root: str | None = None) -> dict[str, Path]:
    """A batch's four stages, each cached micrograph skipped (:mod:`foldstack.cryoem.cache`):
    motion correction, CTF and picking run on the movies the cache does not hold (not at
    all when it holds every one), extraction joins them. Returns the folders of the stages
    that ran, by stage name."""
    def finished(name: str) -> Path | None:
        folder = Path(scratch) / run_id / name / batch
        return folder if load_valid_done(folder, name, run_id, batch) is not None else None

    if finished("extract"):  # a resumed run: nothing to look up or run (a cached batch has no earlier stages)
        return {name: folder for name in ("motioncorr", "ctf", "pick", "extract") if (folder := finished(name))}
    store = open_cache(cache_root, knobs, lambda message: log("preprocess_cache", batch, message))
    hits: dict[str, Entry] = {}
    keys: dict[str, str] = {}
    if store is not None:
        for movie in movies:
            name = _mic_name(movie)
            try:
                keys[name] = store.key(request, knobs, movie)
            except OSError as exc:  # unreadable here: the stages will say so
                log("preprocess_cache", batch, f"{movie.name}: no key ({exc}); computing it")
                continue
            entry = store.get(keys[name], name)
            if entry is not None:
                hits[name] = entry
    misses = [m for m in movies if _mic_name(m) not in hits]
    ran: dict[str, Path] = {}
    if misses:
        ran["motioncorr"] = motioncorr(scratch, run_id, batch, request, misses)
        ran["ctf"] = estimate_ctf(scratch, run_id, batch, request, knobs)
        ran["pick"] = pick(scratch, run_id, batch, request, knobs)
    ran["extract"] = extract(scratch, run_id, batch, request, movies, hits=hits, store=store, keys=keys)
    return ran
