"""What the predict step writes for the reports, through the real step (run_predict) with the
engine's network replaced by a fixed model: AlphaFold2's MSA coverage plot and ``msa_depth``
from a features.npz made by AlphaFold's own feature pipeline, and ESMFold's outputs in
AlphaFold's layout (``ranking_debug.json``, ``ranked_0.metrics.json``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.reports.test_reports import SEQ, _prediction

pytest.importorskip("gemmi")
pytest.importorskip("alphafold.data.pipeline")

# the query, then 5 hits: one covers the first half only (gaps), one has an insertion (lowercase)
A3M = (f">query\n{SEQ}\n"
       f">h1\n{SEQ[:16]}{'-' * (len(SEQ) - 16)}\n"
       f">h2\n{SEQ[:10]}kk{SEQ[10:-1]}W\n"
       f">h3\n{'A' * len(SEQ)}\n"
       f">h4\n{SEQ[:-3]}GGG\n"
       f">h5\n{'-' * 8}{SEQ[8:]}\n")


def _stage(scratch, run_id: str, target: str, sequence: str, request: dict) -> None:
    inputs = scratch / run_id / "input"
    (inputs / "targets").mkdir(parents=True)
    (inputs / "targets" / f"{target}.fasta").write_text(f">{target}\n{sequence}\n")
    (inputs / "request.json").write_text(json.dumps(request))


def test_alphafold2_step_plots_msa_coverage_from_a_real_features_npz(tmp_path, monkeypatch):
    import matplotlib.image
    from alphafold.data import parsers

    import foldstack.steps.alphafold2 as af2
    from foldstack.steps.features import build_monomer_features, save_features
    from foldstack.steps.predict import run_predict

    scratch, weights = tmp_path / "scratch", tmp_path / "weights"
    (weights / "alphafold2").mkdir(parents=True)
    _stage(scratch, "r", "t", SEQ, {"relax": "none"})
    msa = parsers.parse_a3m(A3M)
    features = scratch / "r" / "msa" / "t" / "features.npz"
    features.parent.mkdir(parents=True)
    save_features(features, build_monomer_features(SEQ, "t", [msa], dedupe=True))
    model = _prediction([len(SEQ)], name="model_1", plddt=80, seed=1, complex_=False)
    monkeypatch.setattr(af2, "predict_alphafold2", lambda *a, **k: [model])

    out = run_predict("r", "t", scratch, weights, "alphafold2", "monomer")

    done = json.loads((out / "predict.done.json").read_text())
    assert "plots/msa_coverage.png" in done["outputs"]
    img = matplotlib.image.imread(out / "plots" / "msa_coverage.png")
    assert img.shape[0] > 200 and (img[:, :, :3].max(axis=2) - img[:, :, :3].min(axis=2) > 0.2).sum() > 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["msa_depth"] == 6  # the query and 5 distinct hits
    # per residue: 6 rows minus h1's gaps (after 16) and h5's (first 8); lowercase insertions are not columns
    depth = np.full(len(SEQ), 6)
    depth[16:] -= 1
    depth[:8] -= 1
    assert metrics["msa_coverage_min"] == int(depth.min()) == 5
    assert metrics["msa_coverage_mean"] == round(float(depth.mean()), 1)


def test_esmfold_step_writes_alphafolds_layout(tmp_path, monkeypatch):
    import foldstack.steps.esmfold as esm
    from foldstack.steps.predict import run_predict

    scratch, weights = tmp_path / "scratch", tmp_path / "weights"
    (weights / "esmfold").mkdir(parents=True)
    _stage(scratch, "r", "t", SEQ, {"engine": "esmfold", "relax": "none"})
    model = _prediction([len(SEQ)], name="esmfold", plddt=70, seed=2, complex_=False)
    monkeypatch.setattr(esm, "predict_esmfold", lambda *a, **k: model)

    out = run_predict("r", "t", scratch, weights, "esmfold", "monomer")

    done = json.loads((out / "predict.done.json").read_text())
    assert {"ranking_debug.json", "ranked_0.metrics.json", "ranked_0.pdb", "ranked_0.cif",
            "ranked_0.pae.json"} <= set(done["outputs"])
    assert not any(name.startswith("ranked_1") for name in done["outputs"])  # one model
    debug = json.loads((out / "ranking_debug.json").read_text())
    assert debug["order"] == ["esmfold"] and set(debug["plddts"]) == {"esmfold"}
    assert debug["plddts"]["esmfold"] == pytest.approx(model.mean_plddt, abs=0.01)
    per_model = json.loads((out / "ranked_0.metrics.json").read_text())
    assert per_model["rank"] == 0 and per_model["model_name"] == "esmfold"
    assert per_model["mean_plddt"] == pytest.approx(model.mean_plddt, abs=0.01)
    assert per_model["ptm"] == pytest.approx(model.ptm) and "max_pae" in per_model
    assert "plots/msa_coverage.png" not in done["outputs"]  # no MSA: no coverage plot
