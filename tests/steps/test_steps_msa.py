"""The msa step on the demo DB: A3M, features.npz (no pickle), provenance, contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from foldstack.core.hashing import sha256_file
from foldstack.steps.features import load_features
from tests.steps.conftest import DEMO_SEQ, TARGET, invoke, stage


def test_a3m_has_query_first_and_hits(msa_done):
    scratch, run_id = msa_done
    out = scratch / run_id / "msa" / TARGET
    lines = (out / "msa.a3m").read_text().splitlines()
    assert lines[0].startswith(f">{TARGET}")
    assert lines[1] == DEMO_SEQ
    headers = [ln for ln in lines if ln.startswith(">")]
    assert len(headers) >= 5, "the demo target has ~10 homologs in the demo DB"
    # every aligned row has the query's length once insertions (lowercase) are removed
    for ln in lines[1::2]:
        assert len([c for c in ln if not c.islower()]) == len(DEMO_SEQ)


def test_features_load_without_pickle(msa_done):
    scratch, run_id = msa_done
    path = scratch / run_id / "msa" / TARGET / "features.npz"
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            assert data[key].dtype != object, key
    feats = load_features(path)
    n = len(DEMO_SEQ)
    assert feats["aatype"].shape == (n, 21)
    assert feats["msa"].shape[1] == n and feats["msa"].shape[0] >= 5
    assert feats["sequence"][0] == DEMO_SEQ.encode()
    assert feats["domain_name"].dtype.kind == "S"
    assert feats["msa_species_identifiers"].dtype.kind == "S"
    assert feats["template_aatype"].shape == (1, n, 22)
    assert not feats["template_all_atom_masks"].any()


def test_features_json_and_done_record(msa_done):
    scratch, run_id = msa_done
    out = scratch / run_id / "msa" / TARGET
    info = json.loads((out / "features.json").read_text())
    assert info["tool"]["name"] == "jackhmmer" and info["tool"]["implementation"] == "pyhmmer"
    assert info["tool"]["streamed"] is True
    # the default preset, reduced_dbs, in AlphaFold's MSA order: uniref90, small_bfd, mgnify
    assert info["db_preset"] == "reduced_dbs"
    assert [d["name"] for d in info["databases"]] == ["demo_uniref", "demo_small_bfd", "demo_mgnify"]
    db = info["databases"][0]
    assert db["name"] == "demo_uniref" and db["version"] and db["manifest_sha256"]
    assert db["files"]["demo_uniref.fasta"]["sha256"]
    assert info["parameters"]["incE"] == 0.0001 and info["parameters"]["max_iterations"] == 1
    assert info["timings"]["jackhmmer_demo_uniref"] >= 0
    done = json.loads((out / "msa.done.json").read_text())
    assert set(done) >= {"step", "run_id", "target", "outputs", "tool_versions", "timings", "started_at",
                         "finished_at"}
    assert set(done["outputs"]) == {"msa.a3m", "features.npz", "features.json"}
    for rel, digest in done["outputs"].items():
        assert sha256_file(out / rel) == digest
    assert "pyhmmer" in done["tool_versions"]
    resources = done["resources"]  # the step contract records what the job used
    assert resources["peak_rss_mib"] > 0 and resources["cpu_seconds"] >= 0
    assert set(resources["self"]) == set(resources["children"]) == {"peak_rss_mib", "cpu_seconds"}


def test_rerun_is_idempotent(msa_done, db_root):
    from foldstack.steps.msa import run_msa

    scratch, run_id = msa_done
    done = scratch / run_id / "msa" / TARGET / "msa.done.json"
    before = (done.stat().st_mtime_ns, done.read_text())
    run_msa(run_id, TARGET, scratch, db_root)
    assert (done.stat().st_mtime_ns, done.read_text()) == before
    assert not list((scratch / run_id / "msa").glob(".*attempt*"))


def test_tampered_output_is_recomputed(scratch, db_root):
    from foldstack.steps.msa import run_msa

    stage(scratch, "r", TARGET, DEMO_SEQ)
    out = run_msa("r", TARGET, scratch, db_root)
    (out / "msa.a3m").write_text("garbage\n")
    run_msa("r", TARGET, scratch, db_root)
    assert (out / "msa.a3m").read_text().startswith(f">{TARGET}")


def test_injected_fault_promotes_nothing(scratch, db_root, monkeypatch):
    stage(scratch, "r", TARGET, DEMO_SEQ)
    monkeypatch.setenv("FOLDSTACK_INJECT_FAULT", f"msa:{TARGET}")
    from foldstack.steps.msa import run_msa

    with pytest.raises(RuntimeError, match="injected fault"):
        run_msa("r", TARGET, scratch, db_root)
    step_dir = scratch / "r" / "msa"
    assert not (step_dir / TARGET).exists()
    assert list(step_dir.iterdir()) == []
    # through the CLI it is a crash: non-zero, not one of the contract codes
    result = invoke(["msa", "--run-id", "r", "--target", TARGET, "--scratch", str(scratch), "--db",
                     str(db_root), "--msa-tool", "jackhmmer", "--cache", ""])
    assert result.exit_code not in (0, 2, 3)
    assert not (step_dir / TARGET).exists()


def test_cli_ok_and_bad_inputs(scratch, db_root):
    args = ["msa", "--run-id", "r", "--target", TARGET, "--scratch", str(scratch), "--db", str(db_root),
            "--msa-tool", "jackhmmer", "--cache", ""]
    missing = invoke(args)
    assert missing.exit_code == 2
    assert "target FASTA not found" in missing.output
    stage(scratch, "r", TARGET, DEMO_SEQ + "B")
    assert invoke(args).exit_code == 2  # invalid residue
    stage(scratch, "r", TARGET, DEMO_SEQ)
    bad_tool = invoke(args[:-4] + ["--msa-tool", "hhblits", "--cache", ""])
    assert bad_tool.exit_code == 2
    no_db = invoke(args[:8] + [str(scratch / "nodb")] + args[9:])
    assert no_db.exit_code == 2 and "nodb" in no_db.output
    unsafe = invoke(["msa", "--run-id", "r", "--target", "../x", "--scratch", str(scratch), "--db", str(db_root)])
    assert unsafe.exit_code == 2
    ok = invoke(args)
    assert ok.exit_code == 0, ok.output
    assert (scratch / "r" / "msa" / TARGET / "msa.done.json").is_file()


def test_corrupt_database_is_refused(tmp_path, scratch, db_root):
    import shutil

    from foldstack.steps.msa import run_msa

    root = tmp_path / "db"
    shutil.copytree(db_root, root)
    fasta = next(root.glob("demo_uniref/*/demo_uniref.fasta"))
    fasta.write_text(fasta.read_text().replace("M", "A", 1))
    stage(scratch, "r", TARGET, DEMO_SEQ)
    from foldstack.core.errors import BadInputError

    with pytest.raises(BadInputError, match="sha256"):
        run_msa("r", TARGET, scratch, root)


def test_multimer_target_gets_multimer_features(scratch, db_root):
    from foldstack.steps.msa import run_msa

    other = "MTKILVKDKEDWLKLVNNLSKLRKEKGINQTDLGRMVGVSRQTISLIERGDYNPSVMVALSLAKVFAVSVEDIFTLEEEDE"
    stage(scratch, "r", "cplx", f"{DEMO_SEQ}:{other}")
    out = run_msa("r", "cplx", scratch, db_root)
    feats = load_features(out / "features.npz")
    n = len(DEMO_SEQ) + len(other)
    assert feats["aatype"].shape == (n,)
    assert sorted(set(feats["asym_id"].tolist())) == [1, 2]
    a3m = (out / "msa.a3m").read_text()
    assert a3m.startswith(f">{'cplx'}_1") and "\n>cplx_2" in a3m
    assert json.loads((out / "features.json").read_text())["multimer"] is True
