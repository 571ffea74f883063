"""A multimer run end to end on the local engine, both engines, demo weights.

One FASTA record per complex, chains joined by ':'. The published ``ranked_0.pdb`` /
``ranked_0.cif`` keep one chain per input chain (A, B, ... in input order, residues
numbered from 1 per chain) and ``plddt.tsv`` carries the chain column.
"""

from __future__ import annotations

import json

import gemmi
import pytest

from foldstack.core.request import RunRequest
from foldstack.local.runner import LocalRunner

pytestmark = pytest.mark.e2e

CHAIN_A = "MNEELILKNRLKEVRKEKGYSQQKLADEVGVSRNTISSIETGQFNPTAKLALILCIALDEKFEDLFYF"
CHAIN_B = "MTKILVKDKEDWLKLVNNLSKLRKEKGINQTDLGRMVGVSRQTISLIERGDYNPSVMVALSLAKVFAVSVEDIF"


def _check_chains(target_dir, engine):
    chains = {"A": CHAIN_A, "B": CHAIN_B}
    st = gemmi.read_structure(str(target_dir / "ranked_0.pdb"))
    assert [ch.name for ch in st[0]] == ["A", "B"]
    for ch in st[0]:
        assert gemmi.one_letter_code([r.name for r in ch]).upper() == chains[ch.name]
        assert ch[0].seqid.num == 1
    cif = gemmi.make_structure_from_block(gemmi.cif.read(str(target_dir / "ranked_0.cif")).sole_block())
    assert sorted({ch.name for ch in cif[0]}) == ["A", "B"]
    rows = [r.split("\t") for r in (target_dir / "plddt.tsv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["A"] * len(CHAIN_A) + ["B"] * len(CHAIN_B)
    metrics = json.loads((target_dir / "metrics.json").read_text())
    assert metrics["engine"] == engine and metrics["preset"] == "multimer" and metrics["chains"] == 2
    assert metrics["demo_weights"] is True
    return metrics


@pytest.mark.parametrize("engine", ["esmfold", "alphafold2"])
def test_multimer_run_preserves_chains(demo_home, tmp_path, engine):
    fasta = tmp_path / "complex.fasta"
    fasta.write_text(f">dimer\n{CHAIN_A}:{CHAIN_B}\n")
    out = tmp_path / "out"
    run = LocalRunner(demo_home).submit(
        RunRequest(inputs=(str(fasta),), output_uri=str(out), engine=engine, preset="multimer"))
    assert run.wait(600) == "SUCCEEDED", run.record()
    target = out / run.run_id / "dimer"
    metrics = _check_chains(target, engine)
    if engine == "alphafold2":
        assert metrics["model_name"] == "model_1_multimer_v3"
        assert "iptm" in metrics
        features = json.loads((target / "msa" / "features.json").read_text())
        assert features["multimer"] is True and features["chains"] == 2
        assert features["tool"]["name"] == "jackhmmer"
