"""Accuracy against the simulator's truth (``truth/truth.json``): what the tests assert
and ``bench/bench_cryoem.py`` reports. Only evaluation reads the truth; no stage does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from foldstack.cryoem.fsc import fsc_curve, resolution_at
from foldstack.cryoem.mrc import read_mrc
from foldstack.cryoem.preprocess import global_shifts, read_picks


def load_truth(dataset: Path) -> dict[str, Any]:
    return json.loads((Path(dataset) / "truth" / "truth.json").read_text())


def drift_errors(truth: dict[str, Any], motioncorr_dirs: list[Path]) -> dict[str, float]:
    """Mean per-frame distance (px) between recovered and true displacement, per micrograph."""
    out = {}
    for m in truth["micrographs"]:
        star = next((d / "MotionCorr" / "Movies" / f"{m['name']}.star" for d in motioncorr_dirs
                     if (d / "MotionCorr" / "Movies" / f"{m['name']}.star").is_file()), None)
        if star is None:
            continue
        got, want = global_shifts(star), np.array(m["shifts_px"])
        out[m["name"]] = float(np.linalg.norm(got - want, axis=1).mean())
    return out


def defocus_errors(truth: dict[str, Any], ctf_qc: dict[str, dict[str, float]]) -> dict[str, float]:
    """Relative error of the estimated (mean) defocus, per micrograph."""
    return {m["name"]: abs(ctf_qc[m["name"]]["defocus"] - m["defocus_mean"]) / m["defocus_mean"]
            for m in truth["micrographs"] if m["name"] in ctf_qc}


def astigmatism_errors(truth: dict[str, Any], ctf_qc: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per micrograph: relative errors of DefocusU and DefocusV, and the angle error
    (degrees, modulo 180; meaningful only where the astigmatism is well above the noise)."""
    out = {}
    for m in truth["micrographs"]:
        q = ctf_qc.get(m["name"])
        if q is None or "defocus_u" not in q:
            continue
        diff = abs(q["defocus_angle"] - m["defocus_angle"]) % 180.0
        out[m["name"]] = {"u": abs(q["defocus_u"] - m["defocus_u"]) / m["defocus_u"],
                          "v": abs(q["defocus_v"] - m["defocus_v"]) / m["defocus_v"],
                          "angle_deg": min(diff, 180.0 - diff),
                          "true_astigmatism": m["defocus_u"] - m["defocus_v"]}
    return out


def picking_scores(truth: dict[str, Any], pick_dirs: list[Path], radius_px: float) -> dict[str, float]:
    """Precision and recall of the picks against the true centres: a pick matches the
    nearest unmatched true centre within `radius_px` (greedy by distance)."""
    tp = n_picks = n_true = 0
    for m in truth["micrographs"]:
        mic = f"MotionCorr/Movies/{m['name']}.mrc"
        picks = next((read_picks(d, mic) for d in pick_dirs
                      if (d / "Picks" / f"MotionCorr/Movies/{m['name']}_autopick.star").is_file()), np.zeros((0, 2)))
        true = np.array([[p["x"], p["y"]] for p in m["particles"]])
        n_picks += len(picks)
        n_true += len(true)
        if not len(picks):
            continue
        dist = np.linalg.norm(picks[:, None, :] - true[None, :, :], axis=2)
        used_p, used_t = set(), set()
        for i, j in sorted(np.argwhere(dist <= radius_px).tolist(), key=lambda ij: dist[ij[0], ij[1]]):
            if i not in used_p and j not in used_t:
                used_p.add(i)
                used_t.add(j)
        tp += len(used_p)
    return {"precision": tp / n_picks if n_picks else 0.0, "recall": tp / n_true if n_true else 0.0,
            "picks": n_picks, "true_particles": n_true}


def map_vs_truth(dataset: Path, refined_map: Path, pixel_size: float, *, align: bool = False) -> dict[str, Any]:
    """FSC between a refined map and the true map: in the true map's frame as it is, or,
    with `align` (a de novo map: its own frame and hand), after placing it onto the true map
    (:mod:`foldstack.cryoem.align`; the pose is recorded)."""
    truth_map = read_mrc(Path(dataset) / "truth" / "true_map.mrc")
    refined = read_mrc(refined_map)
    out: dict[str, Any] = {}
    if align:
        from foldstack.cryoem import align as map_align

        pose = map_align.align(truth_map, refined)
        refined = map_align.apply(refined, pose).astype(truth_map.dtype)
        out["alignment"] = pose.to_json(pixel_size)
    curve = fsc_curve(refined, truth_map, pixel_size)
    return {"resolution_fsc_0.5": resolution_at(curve, 0.5), "resolution_fsc_0.143": resolution_at(curve, 0.143),
            "curve": curve, **out}
