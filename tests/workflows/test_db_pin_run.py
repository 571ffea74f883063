"""From a fresh home to a pinned AlphaFold2 run, through the CLI only: `foldstack db build`
makes a database version from a FASTA file the test writes, `foldstack run --local
--engine alphafold2 --db uniref90=V` searches exactly that version, and the manifest says
so, with the provenance of every step (code, weights) and of the run; `rerun` of that
manifest pins the same versions and is refused once one is gone."""

from __future__ import annotations

import json
import random
import shutil

import pytest
from typer.testing import CliRunner

from foldstack.cli import app
from foldstack.core.manifest import load_manifest
from foldstack.core.provenance import git_commit, weights_identity

pytestmark = pytest.mark.e2e

QUERY = "MNEELILKNRLKEVRKEKGYSQQKLADEVGVSRNTISSIETGQFNPTAKLALILCIALDEKFEDLFYF"
VERSION = "mine-2026_11"
runner = CliRunner()


def _own_database_fasta(path):
    """Homologues of the query (a few point mutations each) among unrelated decoys."""
    rng = random.Random(7)
    alphabet = "ACDEFGHIKLMNPQRSTVWY"
    records = []
    for i in range(40):
        seq = list(QUERY)
        for pos in rng.sample(range(len(seq)), 6):
            seq[pos] = rng.choice(alphabet)
        records.append((f"hom{i}", "".join(seq)))
    records += [(f"decoy{i}", "".join(rng.choice(alphabet) for _ in range(90))) for i in range(200)]
    path.write_text("".join(f">{rid} test sequence\n{seq}\n" for rid, seq in records))
    return path


def test_db_build_then_a_pinned_alphafold2_run_from_the_cli(demo_home, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)  # demo weights and the other roles' demo databases
    monkeypatch.setenv("FOLDSTACK_HOME", str(home))
    monkeypatch.delenv("FOLDSTACK_IMAGE", raising=False)
    monkeypatch.delenv("FOLDSTACK_JOB_DEFINITION", raising=False)
    own = _own_database_fasta(tmp_path / "own.fasta")

    built = runner.invoke(app, ["db", "build", "--name", "uniref90", "--version", VERSION, "--fasta", str(own),
                                "--json"])
    assert built.exit_code == 0, built.output
    assert (home / "db" / "uniref90" / VERSION / "manifest.json").is_file()
    listed = json.loads(runner.invoke(app, ["db", "list", "--json"]).stdout)
    assert {"uniref90": VERSION}.items() <= {d["name"]: d["current"] for d in listed["databases"]}.items()

    query = tmp_path / "q.fasta"
    query.write_text(f">q1\n{QUERY}\n")
    out = tmp_path / "out"
    ran = runner.invoke(app, ["run", "--local", str(query), "--engine", "alphafold2", "--db", f"uniref90={VERSION}",
                              "--num-models", "1", "--relax", "none", "--out", str(out), "--json"])
    assert ran.exit_code == 0, ran.output
    run_id = json.loads(ran.stdout[ran.stdout.index("{"):])["run_id"]
    path = out / run_id / "manifest.json"
    manifest = load_manifest(path.read_bytes(), source=str(path))

    assert manifest.request.db_versions == {"uniref90": VERSION}
    msa = manifest.target("q1").provenance["msa"]
    assert msa.databases["uniref90"] == VERSION  # the pinned version, not the demo's uniref90 role
    features = json.loads((out / run_id / "q1" / "msa" / "features.json").read_text())
    assert any(d["name"] == "uniref90" and d["version"] == VERSION for d in features["databases"])

    # provenance of each step: the code that ran it, and the weights predict loaded
    predict = manifest.target("q1").provenance["predict"]
    for step in (msa, predict):
        assert step.build["git_commit"] == git_commit()
        assert step.build["foldstack_version"] == manifest.foldstack_version
        assert step.build["image"] is None  # a local run: no container image
    assert msa.build["job_definition"] == "local:fold/msa"  # the local engine says which jobs.yaml entry ran
    assert predict.build["job_definition"] == f"local:fold/predict/{manifest.target('q1').size_class}"
    weights = predict.build["weights"]
    assert weights["engine"] == "alphafold2" and weights["demo"] is True
    assert weights["digest"] == weights_identity(home / "weights" / "alphafold2", record_name="FETCHED.json",
                                                 demo_marker="DEMO_WEIGHTS")["digest"]
    # ... and of the run
    run_prov = manifest.provenance
    assert run_prov["databases"]["uniref90"] == VERSION and run_prov["databases"] == msa.databases
    assert run_prov["weights"] == [{k: weights[k] for k in ("engine", "demo", "source", "digest")}]
    assert run_prov["collected_by"]["git_commit"] == git_commit()

    # rerun: the same request, pinned to every database the run searched ...
    from foldstack.client.rerun import rerun_request

    pinned = rerun_request(manifest)
    assert pinned.db_versions == msa.databases and pinned.inputs == manifest.request.inputs
    # ... and refused, naming the version, once the user's version is gone
    shutil.rmtree(home / "db" / "uniref90" / VERSION)
    refused = runner.invoke(app, ["rerun", str(path), "--local", "--wait"])
    assert refused.exit_code == 2
    assert f"[db_version_missing] cannot rerun {run_id}" in refused.stderr and f"uniref90={VERSION}" in refused.stderr
