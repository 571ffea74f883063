"""A run whose best model was relaxed: ``structures/<target>.cif`` is the relaxed model and the
manifest's checksum for it is that file's, so a download (which checks every checksum the
manifest lists) succeeds. No relaxation runs: the predict step writes a relaxed_0 file of its
own, different from ranked_0."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from foldstack.steps.common import run_step
from tests.reports.test_reports import SEQ, _prediction, _run

pytest.importorskip("gemmi")
pytest.importorskip("alphafold.common.residue_constants")


def _relaxed_predict(scratch: Path, run_id: str, target: str) -> None:
    from foldstack.steps.outputs import base_metrics, structure_of, write_marked, write_prediction

    model = _prediction([len(SEQ)], name="model_1", plddt=85, seed=1, complex_=False)

    def body(ctx):
        metrics = base_metrics(model, engine="alphafold2", preset="monomer", demo=False, warnings=[], timings={},
                               n_chains=1)
        write_prediction(ctx.work_dir, model, target=target, metrics=metrics, models=[model])
        relaxed = structure_of(model, target)
        for atom in (a for res in relaxed[0][0] for a in res):  # moved, as relaxation does
            atom.pos.x += 0.25
        write_marked(ctx.work_dir, "relaxed_0", relaxed, demo=False)

    run_step("predict", run_id, target, scratch, body)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_structures_checksum_is_the_relaxed_best_models(local_env):
    dirs = local_env

    run = _run(dirs, f">t1\n{SEQ}\n", "monomer", lambda rid: _relaxed_predict(dirs["scratch"], rid, "t1"))

    best = run / "structures" / "t1.cif"
    assert best.read_bytes() == (run / "t1" / "relaxed_0.cif").read_bytes()
    assert best.read_bytes() != (run / "t1" / "ranked_0.cif").read_bytes()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["run_files"]["structures/t1.cif"]["sha256"] == _sha(best)
    # what Run.download checks: every file the manifest lists, as published
    listed = {f"t1/{rel}": meta for rel, meta in manifest["targets"][0]["files"].items()}
    listed.update(manifest["run_files"])
    assert {rel: _sha(run / rel) for rel in listed} == {rel: meta["sha256"] for rel, meta in listed.items()}
