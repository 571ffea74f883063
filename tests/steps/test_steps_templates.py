"""Templates in the msa step (hmmsearch vs pdb_seqres + mmCIF, AlphaFold's featurizer), and
the GPU step reading no database.

Fixture: a tiny template DB assembled at test time from the real PDB entries 1A7G and
2XHE in Debian's python-biopython-doc (never downloaded, not in the repo).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from foldstack.demo_data import template_cif_files
from foldstack.steps.features import load_features, n_templates
from tests.steps.conftest import invoke, stage

pytestmark = pytest.mark.skipif(template_cif_files() is None,
                                reason="Debian python-biopython-doc (1A7G/2XHE mmCIF fixtures) not installed")


@pytest.fixture(scope="module")
def templated(tmp_path_factory, template_root, chain_e):
    from foldstack.steps.msa import run_msa

    scratch = tmp_path_factory.mktemp("scratch-templates")
    stage(scratch, "r", "e1a7g", chain_e)
    return scratch, run_msa("r", "e1a7g", scratch, template_root, "jackhmmer")


def test_template_db_layout(template_root):
    (version,) = [p for p in (template_root / "pdb_mmcif").iterdir() if not p.name.startswith(".")
                  and p.is_dir()]
    assert (template_root / "pdb_mmcif" / "CURRENT").read_text().strip() == version.name
    assert sorted(p.name for p in (version / "mmcif_files").iterdir()) == ["1a7g.cif", "2xhe.cif"]
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["role"] == "pdb_mmcif" and manifest["seqres"] == "pdb_seqres.txt"
    headers = [ln for ln in (version / "pdb_seqres.txt").read_text().splitlines() if ln.startswith(">")]
    assert headers[0].startswith(">1a7g_E mol:protein length:82")
    assert {h.split()[0] for h in headers} == {">1a7g_E", ">2xhe_A", ">2xhe_B"}


def test_matching_query_gets_real_template_features(templated, chain_e):
    _, out = templated
    feats = load_features(out / "features.npz")
    n = len(chain_e)
    assert n_templates(feats) >= 1
    assert feats["template_aatype"].shape[1:] == (n, 22)
    assert feats["template_all_atom_positions"].shape[1:] == (n, 37, 3)
    names = [x.decode() for x in feats["template_domain_names"]]
    assert "1a7g_E" in names
    best = names.index("1a7g_E")
    mask = feats["template_all_atom_masks"][best]
    assert mask[:, 1].sum() >= 0.9 * n  # CA atoms resolved for (nearly) every residue
    ca = feats["template_all_atom_positions"][best][mask[:, 1] > 0, 1]
    gaps = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    assert np.median(gaps) == pytest.approx(3.8, abs=0.1)  # a real backbone, not zeros
    assert feats["template_sequence"][best].decode() == chain_e
    with np.load(out / "features.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)


def test_features_json_records_template_provenance(templated):
    _, out = templated
    info = json.loads((out / "features.json").read_text())
    block = info["templates"]
    assert block["database"]["name"] == "pdb_mmcif" and block["database"]["version"]
    assert block["n_templates"] >= 1 and "1a7g_E" in block["per_chain"][0]["templates"]
    assert block["featurizer"].endswith("HmmsearchHitFeaturizer")
    assert block["hmmsearch"]["E"] == 100.0 and block["max_template_date"]
    assert [d["name"] for d in info["databases"]] == ["demo_uniref", "demo_small_bfd", "demo_mgnify"]  # MSA DBs
    # a monomer: AlphaFold's hhsearch on pdb70, which is not installed here: hmmsearch, and the note says so
    assert block["search"] == "hmmsearch" and "pdb70" in block["note"]
    assert info["timings"]["templates"] >= 0


def test_template_date_cutoff_falls_back_to_placeholder(tmp_path, template_root, chain_e, monkeypatch):
    """1A7G was released 1999-04-27: a 1990 cutoff leaves no template (empty placeholder)."""
    from foldstack.steps.msa import run_msa

    monkeypatch.setenv("FOLDSTACK_MAX_TEMPLATE_DATE", "1990-01-01")
    stage(tmp_path, "r", "e1a7g", chain_e)
    feats = load_features(run_msa("r", "e1a7g", tmp_path, template_root) / "features.npz")
    assert n_templates(feats) == 0 and feats["template_aatype"].shape[0] == 1


def test_mmseqs_msa_also_gets_templates(tmp_path, template_root, chain_e):
    """The template search also works from an MMseqs2 A3M (HMM built as AlphaFold's
    build_profile_from_a3m does)."""
    from foldstack.steps.templates import search_templates, template_database

    a3m = f">q\n{chain_e}\n"
    result = search_templates(chain_e, template_database(template_root), a3m=a3m)
    assert "1a7g_E" in result.used and n_templates(result.features) >= 1


@pytest.mark.slow
def test_predict_reads_no_database(templated, tmp_path, template_root, weights, monkeypatch):
    """features.npz (with templates) + weights are all AlphaFold2 needs: the DB root is gone."""
    import foldstack.steps.databases as databases
    import foldstack.steps.templates as templates

    src_scratch, out = templated
    scratch = tmp_path / "scratch"
    shutil.copytree(out, scratch / "r" / "msa" / "e1a7g")
    hidden = template_root.with_name(template_root.name + "-renamed")
    template_root.rename(hidden)
    try:
        def forbidden(*args, **kwargs):
            raise AssertionError("the predict step opened a database")

        for mod, name in ((databases, "open_database"), (databases, "msa_databases"),
                          (templates, "template_database")):
            monkeypatch.setattr(mod, name, forbidden)
        result = invoke(["predict", "--run-id", "r", "--target", "e1a7g", "--scratch", str(scratch),
                         "--weights", str(weights), "--engine", "alphafold2", "--preset", "monomer"])
        assert result.exit_code == 0, result.output
    finally:
        hidden.rename(template_root)
    done = json.loads((scratch / "r" / "predict" / "e1a7g" / "predict.done.json").read_text())
    assert list(done["inputs"]) == ["msa/e1a7g/features.npz"]
    assert not any(str(template_root) in v or "db" in k for k, v in done["inputs"].items())
