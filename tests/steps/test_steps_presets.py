"""Database presets (AlphaFold's full_dbs / reduced_dbs, ColabFold's colabfold): what each
searches with which tool and parameters; AlphaFold's hhblits/hhsearch command lines;
streamed jackhmmer (the same alignments as pyhmmer's whole-file jackhmmer); multimer
pairing on a UniProt-format fixture, and the note when it is off.

Fixtures: the demo databases (real sequences shipped in the pyhmmer wheel) and, for the
roles no demo database serves (HH-suite BFD/UniRef30/pdb70, UniProt), small fixture
databases written here.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import numpy as np
import pytest

from foldstack.core.request import RunRequest
from foldstack.steps.databases import write_manifest
from foldstack.steps.features import load_features
from foldstack.steps.presets import HHBLITS, JACKHMMER, PRESETS, MissingDatabaseError, plan_searches
from tests.steps.conftest import DEMO_SEQ, copy_demo_dbs, stage

LUXC_VIBHA = "sp|P08639|LUXC_VIBHA"
LUXC_PHOPO = "sp|P19841|LUXC_PHOPO"


def _publish(root, name, version, role, files: dict[str, bytes], **extra):
    """A database version under `root` with the given files and manifest fields."""
    path = root / name / version
    path.mkdir(parents=True)
    for rel, data in files.items():
        (path / rel).write_bytes(data)
    sequences = extra.pop("sequences", None)
    write_manifest(path, name=name, version=version, role=role, sequences=sequences, max_hits=None,
                   source="test fixture", license="CC BY 4.0", extra=extra)
    (root / name / "CURRENT").write_text(version + "\n")


def _hhsuite_db(root, name, role):
    """A stand-in HH-suite database: the ffindex files hhblits would read (never opened:
    the hhblits binary is replaced in the tests that search)."""
    files = {f"{name}_{kind}.{ext}": b"" for kind in ("a3m", "hhm", "cs219") for ext in ("ffdata", "ffindex")}
    _publish(root, name, "v1", role, files, hhsuite_db=name)


def _uniprot_db(root, name="uniprot"):
    """A UniProt-format FASTA (``sp|ACC|NAME_SPECIES``) of the real LuxC / PKS I UniProtKB
    entries shipped in the pyhmmer wheel."""
    from foldstack.demo_data import _demo_records

    records = [(rid, desc, seq) for rid, desc, seq in _demo_records() if rid.startswith(("sp|", "tr|"))]
    assert len(records) == 22 and all(rid.count("|") == 2 for rid, _, _ in records)
    fasta = "".join(f">{rid} {desc}\n{seq}\n" for rid, desc, seq in records).encode()
    _publish(root, name, "2014_test", "uniprot", {f"{name}.fasta": fasta}, sequences=f"{name}.fasta")


def _sequence(rid: str) -> str:
    from foldstack.demo_data import _demo_records

    return next(seq for r, _, seq in _demo_records() if r == rid)


@pytest.fixture(scope="module")
def full_root(tmp_path_factory, db_root):
    """Every role of every preset: the demo DBs plus HH-suite stand-ins and UniProt."""
    root = copy_demo_dbs(db_root, tmp_path_factory.mktemp("db-full"))
    _hhsuite_db(root, "bfd", "bfd")
    _hhsuite_db(root, "uniref30", "uniref30")
    _uniprot_db(root)
    return root


@pytest.fixture(scope="module")
def uniprot_root(tmp_path_factory, db_root):
    root = copy_demo_dbs(db_root, tmp_path_factory.mktemp("db-uniprot"))
    _uniprot_db(root)
    return root


# ----------------------------------------------------------------------------- the plans


def test_request_model_and_presets_name_the_same_presets():
    assert set(PRESETS) == {"full_dbs", "reduced_dbs", "colabfold"}
    assert set(RunRequest.model_fields["db_preset"].annotation.__args__[0].__args__) == set(PRESETS)
    default = RunRequest(inputs=("x.fasta",), output_uri="/o")
    assert (default.db_preset, default.msa_tool) == ("reduced_dbs", "jackhmmer")
    colabfold = RunRequest(inputs=("x.fasta",), output_uri="/o", db_preset="colabfold")
    assert colabfold.msa_tool == "mmseqs2"
    with pytest.raises(ValueError, match="colabfold searches with MMseqs2"):
        RunRequest(inputs=("x.fasta",), output_uri="/o", db_preset="colabfold", msa_tool="jackhmmer")
    with pytest.raises(ValueError, match="esmfold"):
        RunRequest(inputs=("x.fasta",), output_uri="/o", engine="esmfold", db_preset="full_dbs")
    assert RunRequest(inputs=("x.fasta",), output_uri="/o", engine="esmfold").db_preset is None


def _plan_summary(plan):
    return [(s.key, s.tool, [d.name for d in s.databases], s.spec.max_hits) for s in plan.msa]


def test_full_dbs_plan_is_alphafolds(full_root):
    plan = plan_searches(full_root, "full_dbs", multimer=False)
    # AlphaFold's order in make_msa_features: uniref90, bfd (+uniref30, one hhblits search), mgnify
    assert _plan_summary(plan) == [("uniref90", "jackhmmer", ["demo_uniref"], 10_000),
                                   ("bfd+uniref30", "hhblits", ["bfd", "uniref30"], None),
                                   ("mgnify", "jackhmmer", ["demo_mgnify"], 501)]
    assert plan.msa[0].spec.params == JACKHMMER == {"n_iter": 1, "e_value": 0.0001, "F1": 0.0005,
                                                    "F2": 0.00005, "F3": 0.0000005}
    assert plan.msa[1].spec.params == HHBLITS and HHBLITS["n_iter"] == 3 and HHBLITS["e_value"] == 0.001
    assert HHBLITS["maxseq"] == 1_000_000 and HHBLITS["min_prefilter_hits"] == 1000
    assert plan.preset.dedupe is True and plan.pairing is None  # a monomer pairs nothing
    # monomer templates: hhsearch on pdb70; neither pdb70 nor pdb_mmcif here: off, with the reason
    assert plan.templates is None and "templates off" in plan.template_note and "pdb70" in plan.template_note
    hetero = plan_searches(full_root, "full_dbs", multimer=True)
    assert hetero.pairing is not None and hetero.pairing.tool == "jackhmmer"
    assert hetero.pairing.spec.max_hits == 50_000 and [d.name for d in hetero.pairing.databases] == ["uniprot"]
    assert hetero.pairing_note.startswith("on: species identifiers from uniprot/2014_test")
    homomer = plan_searches(full_root, "full_dbs", multimer=True, pairing=False)
    assert homomer.pairing is None and "homomer" in homomer.pairing_note


@pytest.mark.slow
def test_reduced_dbs_and_colabfold_plans(full_root, template_root):
    reduced = plan_searches(full_root, "reduced_dbs")
    assert _plan_summary(reduced) == [("uniref90", "jackhmmer", ["demo_uniref"], 10_000),
                                      ("small_bfd", "jackhmmer", ["demo_small_bfd"], None),
                                      ("mgnify", "jackhmmer", ["demo_mgnify"], 501)]
    fast = plan_searches(full_root, "reduced_dbs", "mmseqs2")  # MMseqs2 stands in for jackhmmer
    assert [s.tool for s in fast.msa] == ["mmseqs2"] * 3
    colabfold = plan_searches(full_root, "colabfold", "mmseqs2", multimer=True)
    assert _plan_summary(colabfold) == [("colabfold_uniref30", "mmseqs2", ["demo_uniref"], None),
                                        ("colabfold_envdb", "mmseqs2", ["demo_mgnify"], None)]
    params = colabfold.msa[0].spec.params
    assert (params["sensitivity"], params["num_iterations"], params["evalue"], params["max_seqs"]) == (8.0, 3, 0.1,
                                                                                                     10000)
    assert params["filter"]["qid"] == "0.0,0.2,0.4,0.6,0.8,1.0" and params["filter"]["max_seq_id"] == 0.95
    assert colabfold.msa[1].spec.seeded_by_profile and colabfold.preset.dedupe is False
    with pytest.raises(Exception, match="MMseqs2"):
        plan_searches(full_root, "colabfold", "jackhmmer")
    # templates: monomers fall back to hmmsearch on pdb_seqres when pdb70 is missing (noted);
    # multimers use hmmsearch on pdb_seqres, as AlphaFold-Multimer does
    if (template_root / "pdb_mmcif").is_dir():
        mono = plan_searches(template_root, "reduced_dbs")
        assert mono.templates.tool == "hmmsearch" and "hhsearch" in mono.template_note
        multi = plan_searches(template_root, "reduced_dbs", multimer=True)
        assert multi.templates.tool == "hmmsearch" and multi.template_note == ""


def test_hhsearch_on_pdb70_when_it_is_installed(full_root, template_root, tmp_path):
    if not (template_root / "pdb_mmcif").is_dir():
        pytest.skip("no template fixture (python-biopython-doc)")
    root = tmp_path / "db"
    shutil.copytree(template_root, root)
    _hhsuite_db(root, "pdb70", "pdb70")
    plan = plan_searches(root, "reduced_dbs")
    assert plan.templates.tool == "hhsearch" and [d.name for d in plan.templates.databases] == ["pdb70", "pdb_mmcif"]
    assert plan.template_note == ""


def test_missing_database_is_a_coded_bad_input_naming_it_and_how_to_get_it(db_root, tmp_path):
    from foldstack.core.errors import BadInputError

    with pytest.raises(MissingDatabaseError) as err:
        plan_searches(db_root, "full_dbs")
    assert isinstance(err.value, BadInputError) and err.value.code == "database_missing"
    assert err.value.missing == ["bfd", "uniref30"]
    assert "download_bfd.sh" in str(err.value) and "download_uniref30.sh" in str(err.value)
    assert "refresh_databases" in str(err.value)
    # through the step: exit 2 (bad input), no output
    from tests.steps.conftest import invoke

    stage(tmp_path, "r", "t", DEMO_SEQ)
    result = invoke(["msa", "--run-id", "r", "--target", "t", "--scratch", str(tmp_path), "--db", str(db_root),
                     "--db-preset", "full_dbs"])
    assert result.exit_code == 2 and "database_missing" in result.output
    assert not (tmp_path / "r" / "msa" / "t").exists()


# ----------------------------------------------------------------------------- HH-suite command lines


def test_hhblits_and_hhsearch_command_lines_are_alphafolds(monkeypatch, tmp_path):
    """Our argv equals what AlphaFold's own wrappers would run (their Popen, captured)."""
    from alphafold.data.tools import hhblits, hhsearch

    from foldstack.steps.msa_search import hhblits_argv
    from foldstack.steps.templates import hhsearch_argv

    seen = []

    class Stop(Exception):
        pass

    def popen(cmd, **kwargs):
        seen.append(cmd)
        raise Stop

    for prefix in ("bfd", "uniref30", "pdb70"):
        (tmp_path / f"{prefix}_a3m.ffdata").write_bytes(b"")
    monkeypatch.setattr(hhblits.subprocess, "Popen", popen)
    monkeypatch.setattr(hhsearch.subprocess, "Popen", popen)
    dbs = [str(tmp_path / "bfd"), str(tmp_path / "uniref30")]
    with pytest.raises(Stop):
        hhblits.HHBlits(binary_path="hhblits", databases=dbs, n_cpu=8).query(str(tmp_path / "q.fasta"))
    (af_cmd,) = seen
    ours = hhblits_argv("hhblits", str(tmp_path / "q.fasta"), af_cmd[af_cmd.index("-oa3m") + 1],
                        [tmp_path / "bfd", tmp_path / "uniref30"], 8, HHBLITS)
    assert ours == af_cmd
    seen.clear()
    with pytest.raises(Stop):
        hhsearch.HHSearch(binary_path="hhsearch", databases=[str(tmp_path / "pdb70")]).query(">q\nMKV\n")
    (af_cmd,) = seen
    assert hhsearch_argv("hhsearch", af_cmd[2], af_cmd[4], tmp_path / "pdb70") == af_cmd


@pytest.fixture
def fake_hhblits(tmp_path, monkeypatch):
    """An hhblits stand-in: records its argv, writes an A3M with the query and one hit."""
    script = tmp_path / "hhblits"
    log = tmp_path / "hhblits.argv"
    script.write_text(f"""#!{os.environ.get('PYTHON', shutil.which('python3'))}
import sys
argv = sys.argv
open({str(log)!r}, "a").write(" ".join(argv) + "\\n")
query = open(argv[argv.index("-i") + 1]).read().split("\\n")[1]
hit = "A" * len(query)
open(argv[argv.index("-oa3m") + 1], "w").write(f">query\\n{{query}}\\n>sp|Q00001|FAKE_ECOLI hhblits hit\\n{{hit}}\\n")
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("FOLDSTACK_HHBLITS", str(script))
    return log


def test_full_dbs_run_searches_bfd_and_uniref30_with_one_hhblits(full_root, tmp_path, fake_hhblits):
    from foldstack.steps.msa import run_msa

    stage(tmp_path, "r", "t", DEMO_SEQ)
    out = run_msa("r", "t", tmp_path, full_root, db_preset="full_dbs")
    info = json.loads((out / "features.json").read_text())
    assert info["db_preset"] == "full_dbs" and info["preset"]["name"] == "full_dbs"
    assert [s["search"] for s in info["preset"]["msa"]] == ["uniref90", "bfd+uniref30", "mgnify"]
    assert [d["name"] for d in info["databases"]] == ["demo_uniref", "bfd", "uniref30", "demo_mgnify"]
    assert all(d["version"] and d["manifest_sha256"] for d in info["databases"])
    assert info["msa_tools"]["bfd+uniref30"]["tool"] == "hhblits"
    (argv,) = [ln for ln in fake_hhblits.read_text().splitlines() if "-oa3m" in ln]  # one search (+ `-h`)
    assert f"-d {full_root / 'bfd' / 'v1' / 'bfd'} -d {full_root / 'uniref30' / 'v1' / 'uniref30'}" in argv
    assert "-n 3 -e 0.001 -maxseq 1000000" in argv
    assert info["hits"]["bfd+uniref30"] == [1]
    a3m = (out / "msa.a3m").read_text()
    assert a3m.index(">938293.") < a3m.index(">sp|Q00001|FAKE_ECOLI")  # after the UniRef90 rows
    feats = load_features(out / "features.npz")
    assert (feats["msa"] == 0).all(axis=1).any()  # the all-alanine hhblits row (A = 0) is in the MSA


@pytest.mark.slow  # builds two real MMseqs2 indexes (~17 s each): `make test` only
def test_colabfold_preset_runs_colabfold_search(db_root, tmp_path):
    if shutil.which("mmseqs") is None:
        pytest.skip("Debian mmseqs2 not installed")
    from foldstack.steps.msa import run_msa

    root = copy_demo_dbs(db_root, tmp_path / "db")
    stage(tmp_path, "r", "t", DEMO_SEQ)
    out = run_msa("r", "t", tmp_path, root, "mmseqs2", db_preset="colabfold")
    info = json.loads((out / "features.json").read_text())
    assert info["db_preset"] == "colabfold" and info["msa_tool"] == "mmseqs2"
    assert set(info["hits"]) == {"demo_uniref", "demo_mgnify"}
    run = info["mmseqs_target_db"]["colabfold_search"][0]
    assert run["expandaln"].startswith("not run") and run["queries"] == 1
    assert info["parameters"]["num_iterations"] == 3 and info["parameters"]["sensitivity"] == 8.0
    assert info["hits"]["demo_uniref"][0] >= 5  # three profile iterations find the demo target's family


# ----------------------------------------------------------------------------- streamed jackhmmer


# One iteration keeps the byte-for-byte check in `make test-fast`; three (every query x 3
# searches x 3 iterations, minutes on 2 cores) run in `make test`.
@pytest.mark.parametrize("iterations", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_streamed_jackhmmer_equals_pyhmmers_whole_file_jackhmmer(db_root, iterations):
    """Same Stockholm, byte for byte, as pyhmmer.hmmer.jackhmmer over the loaded file (the
    hit set of the jackhmmer binary), also with a block size that splits the database."""
    import io

    import pyhmmer
    from pyhmmer.easel import Alphabet, SequenceFile, TextSequence

    from foldstack.demo_data import _demo_records
    from foldstack.steps.databases import open_database
    from foldstack.steps.hmmer import StreamStats, jackhmmer

    db = open_database(db_root, "demo_uniref")
    alphabet = Alphabet.amino()
    with SequenceFile(str(db.sequences), digital=True, alphabet=alphabet) as f:
        whole = f.read_block()  # the reference only: the step never does this
    records = _demo_records()
    queries = [r for r in records if r[0].startswith("sp|")][::5] + records[::700]
    params = {**JACKHMMER, "n_iter": iterations}
    for rid, _, seq in queries:
        query = TextSequence(name="query", sequence=seq).digitize(alphabet)
        ref = next(pyhmmer.hmmer.jackhmmer(query, whole, cpus=2, max_iterations=iterations, F1=0.0005, F2=0.00005,
                                           F3=0.0000005, incE=0.0001, E=0.0001))
        buf = io.BytesIO()
        ref.msa.write(buf, "stockholm")
        stats = StreamStats()
        got = jackhmmer(seq, "query", db.sequences, params, cpus=2, z=db.sequence_count, stats=stats)
        assert got == buf.getvalue().decode(), rid
        counted = jackhmmer(seq, "query", db.sequences, params, cpus=2, z=None)  # Z counted while streaming
        assert counted == got, rid
    assert stats.z == 2122 and stats.z_source == "database manifest sequence_count"


def test_streamed_search_reads_bounded_blocks(db_root, monkeypatch):
    from foldstack.steps.databases import open_database
    from foldstack.steps.hmmer import StreamStats, jackhmmer

    monkeypatch.setenv("FOLDSTACK_SEARCH_BLOCK", "100")
    db = open_database(db_root, "demo_uniref")
    stats = StreamStats()
    whole = jackhmmer(DEMO_SEQ, "query", db.sequences, JACKHMMER, cpus=2, stats=stats)
    assert stats.blocks == 22 and stats.sequences == 2122 and stats.z_source == "counted while streaming"
    monkeypatch.setenv("FOLDSTACK_SEARCH_BLOCK", "100000")
    assert jackhmmer(DEMO_SEQ, "query", db.sequences, JACKHMMER, cpus=2) == whole


def test_dedupe_across_msas_as_upstream_alphafold():
    from alphafold.data import parsers

    from foldstack.steps.features import make_msa_features

    a = parsers.Msa(sequences=["MKV", "MKA"], deletion_matrix=[[0] * 3] * 2, descriptions=["q", "x"])
    b = parsers.Msa(sequences=["MKV", "MKA", "MRA"], deletion_matrix=[[0] * 3] * 3, descriptions=["q", "x", "y"])
    assert make_msa_features([a, b], dedupe=True)["msa"].shape[0] == 3  # MKV, MKA, MRA
    assert make_msa_features([a, b], dedupe=False)["msa"].shape[0] == 5  # the fork keeps every row
    only_repeats = parsers.Msa(sequences=["MKV"], deletion_matrix=[[0] * 3], descriptions=["q"])
    assert make_msa_features([a, only_repeats], dedupe=True)["msa"].shape[0] == 2


# ----------------------------------------------------------------------------- pairing


def test_heteromer_pairs_rows_by_uniprot_species(uniprot_root, tmp_path):
    """Two LuxC chains (Vibrio harveyi, Photobacterium phosphoreum): each one's UniProt search
    finds the LuxC family, and AlphaFold's pairing puts hits of the same species in one row."""
    from foldstack.steps.msa import run_msa

    a, b = _sequence(LUXC_VIBHA), _sequence(LUXC_PHOPO)
    stage(tmp_path, "r", "lux", f"{a}:{b}")
    out = run_msa("r", "lux", tmp_path, uniprot_root)
    info = json.loads((out / "features.json").read_text())
    pairing = info["pairing"]
    assert pairing["status"].startswith("on: species identifiers from uniprot/2014_test")
    assert pairing["database"]["name"] == "uniprot" and pairing["database"]["version"] == "2014_test"
    assert pairing["species_identifiers"]["A"] >= 5 and pairing["species_identifiers"]["B"] >= 5
    assert pairing["paired_rows"] >= 5
    assert [d["name"] for d in info["databases"]][-1] == "uniprot"
    assert info["hits"]["uniprot"][0] >= 10  # the LuxC family, with UniProt headers

    # the chain's UniProt alignment carries AlphaFold-parsable species identifiers
    from alphafold.data import parsers, pipeline

    sto = _uniprot_alignment(tmp_path, a, uniprot_root)
    species = pipeline.make_msa_features([parsers.parse_stockholm(sto)])["msa_species_identifiers"]
    assert {s.decode() for s in species if s} >= {"VIBHA", "PHOPO", "ALIFS", "PHOLE"}

    # in the merged features the paired rows come first: each has residues in both chains
    feats = load_features(out / "features.npz")
    msa, n = feats["msa"], len(a)
    gap = 21
    for row in range(1, pairing["paired_rows"] + 1):
        assert (msa[row, :n] != gap).any() and (msa[row, n:len(a) + len(b)] != gap).any(), row


def _uniprot_alignment(tmp_path, chain, root) -> str:
    from foldstack.steps.databases import open_database
    from foldstack.steps.msa import jackhmmer_stockholm

    return jackhmmer_stockholm(chain, "query", open_database(root, "uniprot"), 2)


def test_heteromer_without_uniprot_says_pairing_is_off(db_root, tmp_path):
    from foldstack.steps.msa import run_msa

    a, b = _sequence(LUXC_VIBHA), _sequence(LUXC_PHOPO)
    stage(tmp_path, "r", "lux", f"{a}:{b}")
    out = run_msa("r", "lux", tmp_path, db_root)
    pairing = json.loads((out / "features.json").read_text())["pairing"]
    assert pairing["status"].startswith("off: no uniprot database")
    assert "download_uniprot.sh" in pairing["status"]
    assert pairing["database"] is None and pairing["paired_rows"] == 0
    feats = load_features(out / "features.npz")
    assert np.asarray(feats["msa"]).shape[0] > 1  # the unpaired MSAs are all there


def test_homomer_searches_no_uniprot(uniprot_root, tmp_path):
    from foldstack.steps.msa import run_msa

    stage(tmp_path, "r", "homo", f"{DEMO_SEQ}:{DEMO_SEQ}")
    info = json.loads((run_msa("r", "homo", tmp_path, uniprot_root) / "features.json").read_text())
    assert "homomer" in info["pairing"]["status"] and "uniprot" not in info["hits"]
