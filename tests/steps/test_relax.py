"""Amber relaxation (foldstack.steps.relax) on a real structure: the first residues of
wwPDB 1A7G (Debian's python-biopython-doc), with three side chains pushed out of place.
Through the predict step too, with the engine replaced by that structure."""

from __future__ import annotations

import json
import re

import gemmi
import numpy as np
import pytest

from foldstack.demo_data import template_cif_files
from tests.steps.conftest import stage

pytest.importorskip("openmm")
pytest.importorskip("pdbfixer")

N_RES = 24
PUSHED = (4, 11, 18)  # residues whose side chains are moved 1 Å out along CA->CB


def _source() -> gemmi.Structure:
    files = template_cif_files()
    if files is None:
        pytest.skip("Debian python-biopython-doc (1A7G mmCIF) not installed")
    st = gemmi.read_structure(str(next(f for f in files if f.name.startswith("1A7G"))))
    st.remove_ligands_and_waters()
    st.remove_hydrogens()
    st.remove_alternative_conformations()
    return st


def _prediction(name: str = "model_1", push: float = 1.0, plddt: float = 80.0):
    """A Prediction (AlphaFold atom37) of 1A7G's first residues, side chains of PUSHED moved."""
    from alphafold.common import residue_constants as rc

    from foldstack.steps.outputs import Prediction

    chain = _source()[0][0]
    n = N_RES
    pos, mask = np.zeros((n, 37, 3)), np.zeros((n, 37))
    aatype = np.zeros(n, dtype=int)
    for i in range(n):
        res = chain[i]
        aatype[i] = rc.restype_order[rc.restype_3to1[res.name]]
        ca, cb = (np.array(res[name][0].pos.tolist()) for name in ("CA", "CB")) if i in PUSHED else (0, 0)
        along = push * (cb - ca) / np.linalg.norm(cb - ca) if i in PUSHED else 0.0  # stretches CA-CB
        for atom in res:
            if atom.name in rc.atom_order:
                j = rc.atom_order[atom.name]
                shift = along if atom.name not in ("N", "CA", "C", "O") else 0.0
                pos[i, j] = np.array(atom.pos.tolist()) + shift
                mask[i, j] = 1
    return Prediction(aatype=aatype, atom_positions=pos, atom_mask=mask, residue_index=np.arange(1, n + 1),
                      chain_index=np.zeros(n, dtype=int), plddt=np.linspace(plddt - 10, plddt + 10, n),
                      model_name=name, ptm=0.5)


def _heavy(st: gemmi.Structure) -> dict[tuple[int, str], np.ndarray]:
    return {(res.seqid.num, a.name): np.array(a.pos.tolist()) for res in st[0][0] for a in res
            if a.element.name != "H"}


@pytest.fixture(scope="module")
def relaxed(tmp_path_factory):
    """relax_models(mode=all) on two models (the pushed structure and a clean copy), demo-marked."""
    from foldstack.steps.outputs import structure_of
    from foldstack.steps.relax import relax_models

    out = tmp_path_factory.mktemp("relax")
    models = [_prediction("model_1"), _prediction("model_2", push=0.0)]
    for rank, model in enumerate(models):  # the unrelaxed models, as the predict step writes them
        (out / f"ranked_{rank}.pdb").write_text(structure_of(model, "t").make_pdb_string())
    records = relax_models(out, models, mode="all", target="t", demo=True, log=lambda m: None)
    return out, models, records


@pytest.mark.slow
def test_relaxation_lowers_energy_and_violations_and_keeps_the_fold(relaxed):
    out, _models, records = relaxed
    rec = records[0]
    assert rec["status"] == "relaxed" and rec["relaxed"] is True and rec["file"] == "relaxed_0.pdb"
    assert rec["energy_after_kj_mol"] < rec["energy_before_kj_mol"]
    assert rec["violations_before"] >= len(PUSHED)  # the pushed side chains stretch their CA-CB bonds
    assert rec["violations_after"] <= rec["violations_before"] and rec["violations_after"] == 0
    assert rec["platform"] and rec["seconds"] > 0 and 1 <= rec["outer_iterations"] <= 3
    before = _heavy(gemmi.read_structure(str(out / "ranked_0.pdb")))
    after = _heavy(gemmi.read_structure(str(out / "relaxed_0.pdb")))
    common = sorted(set(before) & set(after))
    assert len(common) == len(before)  # every heavy atom kept (PDBFixer adds OXT, never removes)
    d = np.array([np.linalg.norm(before[k] - after[k]) for k in common])
    rmsd = float(np.sqrt(np.mean(d ** 2)))
    assert rmsd < 1.0 and abs(rmsd - rec["heavy_atom_rmsd"]) < 0.05  # restraints hold the fold
    pushed = [np.linalg.norm(before[k] - after[k]) for k in common if k[0] - 1 in PUSHED and k[1] == "CB"]
    assert max(pushed) > 0.2  # ...while the stretched bonds were repaired


def test_relaxed_files_have_hydrogens_plddt_and_demo_marker(relaxed):
    out, models, records = relaxed
    for rank in (0, 1):
        assert records[rank]["status"] == "relaxed"
        pdb = (out / f"relaxed_{rank}.pdb").read_text()
        assert "REMARK 250 FOLDSTACK DEMO WEIGHTS" in pdb and pdb.index("REMARK 250") < pdb.index("ATOM ")
        st = gemmi.read_structure(str(out / f"relaxed_{rank}.pdb"))
        elements = [a.element.name for r in st[0][0] for a in r]
        assert elements.count("H") > elements.count("C")
        assert [r.seqid.num for r in st[0][0]] == list(range(1, N_RES + 1))
        b = [r[0].b_iso for r in st[0][0]]
        assert np.allclose(b, models[rank].plddt, atol=0.01)
        cif = (out / f"relaxed_{rank}.cif").read_text()
        assert re.search(r"^_foldstack\.demo_weights\s+yes$", cif, re.M)
        assert gemmi.make_structure_from_block(gemmi.cif.read(str(out / f"relaxed_{rank}.cif")).sole_block())[
            0].count_atom_sites() == st[0].count_atom_sites()


def test_violations_counted_on_known_geometry():
    from foldstack.steps.relax import count_violations

    chain = _source()[0][0]

    def residues(st_chain, shift_cb=0.0, clash=False):
        out = []
        for i in range(N_RES):
            atoms = {a.name: np.array(a.pos.tolist()) for a in st_chain[i]}
            if shift_cb and i == 5:
                atoms["CB"] = atoms["CB"] + [shift_cb, 0, 0]
            if clash and i == 15:  # on top of residue 3's CA
                atoms = {k: v - atoms["CA"] + out[3][3]["CA"] + 0.3 for k, v in atoms.items()}
            out.append((st_chain.name, st_chain[i].name, st_chain[i].seqid.num, atoms))
        return out

    assert count_violations(residues(chain))["residues"] == 0  # a refined crystal structure
    stretched = count_violations(residues(chain, shift_cb=1.0))
    assert stretched["bonds"] >= 1 and stretched["residues"] >= 1
    clashed = count_violations(residues(chain, clash=True))
    assert clashed["clashes"] >= 1 and clashed["residues"] >= 2


@pytest.mark.slow
def test_exploding_forces_fail_and_keep_the_model(tmp_path):
    """Residue 10's atoms on top of residue 15's: infinite forces, NaN coordinates."""
    from foldstack.steps.relax import relax_models

    model = _prediction(push=0.0)
    model.atom_positions[10] = model.atom_positions[15]
    model.atom_mask[10] = model.atom_mask[15] * model.atom_mask[10]
    (rec,) = relax_models(tmp_path, [model], mode="best", target="t", demo=False, log=lambda m: None)
    assert rec["status"] == "failed" and rec["relaxed"] is False
    assert "NaN" in rec["reason"] or "diverged" in rec["reason"]
    assert rec["violations_before"] >= 2
    assert not list(tmp_path.glob("relaxed_*"))


def test_residue_without_atoms_is_refused(tmp_path):
    from foldstack.steps.relax import relax_models

    model = _prediction(push=0.0)
    model.atom_mask[5] = 0  # what an X residue predicts
    (rec,) = relax_models(tmp_path, [model], mode="best", target="t", demo=False, log=lambda m: None)
    assert rec["status"] == "failed" and "position 6" in rec["reason"]


def test_collapsed_model_is_refused_quickly(tmp_path):
    """A random-weights-like model (every atom within 1 Å of the origin) is not minimised."""
    from foldstack.steps.relax import relax_models

    model = _prediction(push=0.0)
    model.atom_positions = np.random.default_rng(0).normal(0, 1.0, model.atom_positions.shape)
    (rec,) = relax_models(tmp_path, [model], mode="all", target="t", demo=True, log=lambda m: None)
    assert rec["status"] == "failed" and rec["violations_before"] == N_RES
    assert "not a protein-like model" in rec["reason"] and rec["seconds"] < 10
    assert not list(tmp_path.glob("relaxed_*"))


@pytest.mark.parametrize(("mode", "relaxed_ranks"), [("none", []), ("best", [0]), ("all", [0, 1])])
@pytest.mark.slow
def test_predict_step_publishes_what_relax_asks(scratch, weights, monkeypatch, mode, relaxed_ranks):
    """run_predict with the run's request.json saying `relax`; AlphaFold2 replaced by two fixed models."""
    import foldstack.steps.alphafold2 as af2
    from foldstack.steps.features import save_features
    from foldstack.steps.predict import run_predict

    models = [_prediction("m1", plddt=85), _prediction("m2", push=0.5, plddt=70)]
    monkeypatch.setattr(af2, "predict_alphafold2", lambda *a, **k: models)
    stage(scratch, "r", "t", "A" * N_RES)
    (scratch / "r" / "msa" / "t").mkdir(parents=True)
    save_features(scratch / "r" / "msa" / "t" / "features.npz", af2.dummy_features())
    (scratch / "r" / "input" / "request.json").write_text(json.dumps({"relax": mode}))
    out = run_predict("r", "t", scratch, weights, "alphafold2", "monomer")
    files = {p.name for p in out.iterdir()}
    assert {f for f in files if f.startswith("relaxed_")} == {f"relaxed_{r}.{e}" for r in relaxed_ranks
                                                                for e in ("pdb", "cif")}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["relax_mode"] == mode
    statuses = [m["relax"]["status"] for m in metrics["models"]]
    assert statuses == ["relaxed" if r in relaxed_ranks else "skipped" for r in range(2)]
    assert metrics["relax"] == metrics["models"][0]["relax"]
    debug = json.loads((out / "ranking_debug.json").read_text())
    assert debug["order"] == ["m1", "m2"] and [debug["relax"][n]["status"] for n in debug["order"]] == statuses
    per_model = json.loads((out / "ranked_1.metrics.json").read_text())
    assert per_model["relax"]["relaxed"] is (1 in relaxed_ranks)
    done = json.loads((out / "predict.done.json").read_text())
    assert {f for f in done["outputs"] if f.startswith("relaxed_")} == {f for f in files if f.startswith("relaxed_")}
    if relaxed_ranks:
        assert done["tool_versions"]["openmm"] and "relax" in done["timings"]
        assert metrics["relax"]["violations_after"] <= metrics["relax"]["violations_before"]


@pytest.mark.slow  # runs the (tiny, random-weight) ESMFold model, then OpenMM: `make test` only
def test_failed_relaxation_does_not_fail_the_target(scratch, weights):
    """The demo ESMFold model (random weights) is refused by relax=best; the target is done."""
    from foldstack.steps.predict import run_predict

    stage(scratch, "r", "t", "MNEELILKNRLKEVRKEKGYSQQKLADEVGVSRNTISSIETGQFNPTAK")
    (scratch / "r" / "input" / "request.json").write_text(json.dumps({"engine": "esmfold", "relax": "best"}))
    out = run_predict("r", "t", scratch, weights, "esmfold", "monomer")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["relax"]["status"] == "failed" and metrics["relax"]["reason"]
    assert (out / "ranked_0.pdb").is_file() and not (out / "relaxed_0.pdb").exists()
    assert (out / "predict.done.json").is_file()


def test_request_relax_defaults_and_validation():
    from foldstack.core.errors import InputValidationError
    from foldstack.core.request import RunRequest
    from foldstack.tasks.validate import parse_request

    base = {"inputs": ["in.fasta"], "output_uri": "/out"}
    assert RunRequest(**base).relax == "best"
    assert RunRequest(**base, engine="esmfold").relax == "none"
    assert RunRequest(**base, engine="esmfold", relax="all").relax == "all"
    with pytest.raises(InputValidationError) as err:
        parse_request({**base, "relax": "fast"})
    message = str(err.value)
    assert "\n" not in message and "relax" in message and "'none', 'best' or 'all'" in message


def test_run_id_changes_only_when_relax_leaves_the_default():
    from foldstack.core.fasta import FastaRecord
    from foldstack.core.request import RunRequest
    from foldstack.core.runid import make_run_id

    rec = [FastaRecord(id="t", chains=("MKV",), source="x", line=1)]
    base = {"inputs": ["in.fasta"], "output_uri": "/out"}
    default = make_run_id(RunRequest(**base), rec)
    assert make_run_id(RunRequest(**base, relax="best"), rec) == default
    assert make_run_id(RunRequest(**base, relax="none"), rec) != default
    assert make_run_id(RunRequest(**base, relax="all"), rec) != make_run_id(RunRequest(**base, relax="none"), rec)


@pytest.mark.slow
def test_platform_override_names_what_is_available(tmp_path, monkeypatch):
    from foldstack.steps.relax import PLATFORM_ENV, relax_models

    monkeypatch.setenv(PLATFORM_ENV, "NoSuchPlatform")
    (rec,) = relax_models(tmp_path, [_prediction(push=0.0)], mode="best", target="t", demo=False,
                          log=lambda m: None)
    assert rec["status"] == "failed" and "NoSuchPlatform" in rec["reason"] and "CPU" in rec["reason"]


def test_report_shows_each_models_relaxation():
    from foldstack.reports import target_report

    models = [{"model_name": "m1", "relax": {"status": "relaxed", "relaxed": True, "violations_before": 7,
                                             "violations_after": 0}},
              {"model_name": "m2", "relax": {"status": "failed", "relaxed": False, "reason": "NaN <here>"}},
              {"model_name": "m3", "relax": {"status": "skipped", "relaxed": False}}]
    page = target_report({"id": "t", "metrics": {"models": models},
                          "files": {"ranked_0.pdb": "x", "relaxed_0.pdb": "x", "relaxed_0.cif": "x"}},
                         structure_pdb=None, plddt_tsv=None, run_id="r")
    rows = page.split('<table id="models">')[1].split("</table>")[0].split("<tr>")[2:]
    assert "relaxed: 7 → 0" in rows[0] and 'href="relaxed_0.pdb"' in rows[0] and 'href="relaxed_0.cif"' in rows[0]
    assert "relaxation failed" in rows[1] and "NaN &lt;here&gt;" in rows[1] and "relaxed_1" not in rows[1]
    assert "not relaxed" in rows[2]
