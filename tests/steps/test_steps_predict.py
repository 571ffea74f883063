"""The predict step: ESMFold and AlphaFold2 on tiny random demo weights."""

from __future__ import annotations

import json
import shutil

import gemmi
import numpy as np
import pytest

from tests.steps.conftest import DEMO_SEQ, TARGET, invoke, stage

EXPECTED = {"ranked_0.pdb", "ranked_0.cif", "metrics.json", "plddt.tsv", "pae.json", "plots/plddt.png",
            "predict.done.json"}


def _files(path):
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


def _check_outputs(out, engine, n_res, chains=1):
    assert _files(out) >= EXPECTED
    st = gemmi.read_structure(str(out / "ranked_0.pdb"))
    assert len(st) == 1 and len(st[0]) == chains
    assert sum(len(ch) for ch in st[0]) == n_res
    assert st[0].count_atom_sites() > 4 * n_res
    cif = gemmi.make_structure_from_block(gemmi.cif.read(str(out / "ranked_0.cif")).sole_block())
    assert cif[0].count_atom_sites() == st[0].count_atom_sites()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["engine"] == engine and metrics["n_residues"] == n_res and metrics["chains"] == chains
    assert 0 <= metrics["mean_plddt"] <= 100 and metrics["ptm"] is not None
    assert metrics["demo_weights"] is True and any("NOT a meaningful" in w for w in metrics["warnings"])
    rows = (out / "plddt.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["chain", "residue_index", "residue_name", "plddt"]
    assert len(rows) == n_res + 1
    plddt = [float(r.split("\t")[3]) for r in rows[1:]]
    assert abs(np.mean(plddt) - metrics["mean_plddt"]) < 0.05
    # B-factors carry pLDDT on AlphaFold's 0-100 scale
    assert abs(st[0][0][0][0].b_iso - plddt[0]) < 0.01
    pae = json.loads((out / "pae.json").read_text())
    assert np.asarray(pae[0]["predicted_aligned_error"]).shape == (n_res, n_res)
    assert (out / "plots" / "plddt.png").read_bytes()[:4] == b"\x89PNG"
    done = json.loads((out / "predict.done.json").read_text())
    assert set(done["outputs"]) == _files(out) - {"predict.done.json"}
    return metrics


@pytest.mark.slow  # runs the (tiny, random-weight) ESMFold model: `make test` only
def test_esmfold_writes_every_output(esmfold_done):
    scratch, run_id = esmfold_done
    metrics = _check_outputs(scratch / run_id / "predict" / TARGET, "esmfold", len(DEMO_SEQ))
    assert metrics["model_name"] == "esmfold"


@pytest.mark.slow  # runs the (tiny, random-weight) ESMFold model: `make test` only
def test_esmfold_rerun_is_idempotent(esmfold_done, weights, monkeypatch):
    import foldstack.steps.esmfold as esm
    from foldstack.steps.predict import run_predict

    scratch, run_id = esmfold_done
    done = scratch / run_id / "predict" / TARGET / "predict.done.json"
    before = done.read_text()
    monkeypatch.setattr(esm, "predict_esmfold", lambda *a, **k: pytest.fail("recomputed"))
    result = invoke(["predict", "--run-id", run_id, "--target", TARGET, "--scratch", str(scratch),
                     "--weights", str(weights), "--engine", "esmfold", "--preset", "monomer"])
    assert result.exit_code == 0
    run_predict(run_id, TARGET, scratch, weights, "esmfold", "monomer")
    assert done.read_text() == before


@pytest.mark.slow  # runs the (tiny, random-weight) ESMFold model: `make test` only
def test_esmfold_complex_drops_linker(scratch, weights):
    from foldstack.steps.predict import run_predict

    other = "MTKILVKDKEDWLKLVNNLSKLRKEKGINQTDLG"
    stage(scratch, "r", "cplx", f"{DEMO_SEQ}:{other}")
    out = run_predict("r", "cplx", scratch, weights, "esmfold", "multimer")
    st = gemmi.read_structure(str(out / "ranked_0.pdb"))
    assert [ch.name for ch in st[0]] == ["A", "B"]
    assert [len(ch) for ch in st[0]] == [len(DEMO_SEQ), len(other)]
    assert gemmi.one_letter_code([r.name for r in st[0]["B"]]).upper() == other
    assert st[0]["B"][0].seqid.num == 1


def only_a_failure_record(scratch, code: str) -> bool:
    """Nothing promoted: the target's folder holds only its failure record, with `code`."""
    folder = scratch / "r" / "predict" / TARGET
    files = [p.relative_to(scratch / "r" / "predict") for p in (scratch / "r" / "predict").rglob("*") if p.is_file()]
    return files == [folder.relative_to(scratch / "r" / "predict") / "predict.failed.json"] and \
        json.loads((folder / "predict.failed.json").read_text())["code"] == code


def test_fault_injection_promotes_nothing(scratch, weights, monkeypatch):
    stage(scratch, "r", TARGET, DEMO_SEQ)
    monkeypatch.setenv("FOLDSTACK_INJECT_FAULT", "predict:*")
    result = invoke(["predict", "--run-id", "r", "--target", TARGET, "--scratch", str(scratch),
                     "--weights", str(weights), "--engine", "esmfold", "--preset", "monomer"])
    assert result.exit_code not in (0, 2, 3)
    assert isinstance(result.exception, RuntimeError) and "injected fault" in str(result.exception)
    assert only_a_failure_record(scratch, "crash")


def test_missing_weights_error_names_dir_and_commands(scratch, tmp_path):
    stage(scratch, "r", TARGET, DEMO_SEQ)
    empty = tmp_path / "noweights"
    for engine in ("esmfold", "alphafold2"):
        if engine == "alphafold2":  # alphafold2 reads features: give it some
            feats = scratch / "r" / "msa" / TARGET
            feats.mkdir(parents=True)
            from foldstack.steps.alphafold2 import dummy_features
            from foldstack.steps.features import save_features

            save_features(feats / "features.npz", dummy_features())
        result = invoke(["predict", "--run-id", "r", "--target", TARGET, "--scratch", str(scratch),
                         "--weights", str(empty), "--engine", engine, "--preset", "monomer"])
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert str(empty / engine) in text
        assert f"foldstack weights fetch {engine} --dest {empty}" in text
        assert f"foldstack weights demo --dest {empty}" in text
        # nothing published; the target's failure record (steps/failures.py) says why
        assert not (scratch / "r" / "predict" / TARGET / "predict.done.json").exists()
        assert json.loads((scratch / "r" / "predict" / TARGET / "predict.failed.json").read_text())["target"] == TARGET


@pytest.mark.parametrize(
    ("engine", "preset", "chains"),
    [("esmfold", "multimer", 1), ("esmfold", "monomer", 2), ("rosetta", "monomer", 1), ("esmfold", "dimer", 1)],
)
def test_bad_engine_preset_combinations_exit_2(scratch, weights, engine, preset, chains):
    stage(scratch, "r", TARGET, ":".join([DEMO_SEQ] * chains))
    result = invoke(["predict", "--run-id", "r", "--target", TARGET, "--scratch", str(scratch),
                     "--weights", str(weights), "--engine", engine, "--preset", preset])
    assert result.exit_code == 2, result.output


@pytest.mark.parametrize("error", ["torch", "memory", "cuda"])
def test_esmfold_out_of_memory_exits_3(scratch, weights, monkeypatch, error):
    import torch
    from transformers import EsmForProteinFolding

    def boom(self, *args, **kwargs):
        if error == "torch":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if error == "memory":
            raise MemoryError()
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(EsmForProteinFolding, "infer", boom)
    stage(scratch, "r", TARGET, DEMO_SEQ)
    result = invoke(["predict", "--run-id", "r", "--target", TARGET, "--scratch", str(scratch),
                     "--weights", str(weights), "--engine", "esmfold", "--preset", "monomer"])
    assert result.exit_code == 3, result.output
    assert "out of memory" in result.output
    assert only_a_failure_record(scratch, "out_of_memory")


@pytest.mark.slow
def test_alphafold2_xla_out_of_memory_exits_3(msa_done, scratch, weights, monkeypatch):
    from alphafold.model import model as af_model

    src_scratch, run_id = msa_done
    shutil.copytree(src_scratch / run_id / "msa", scratch / "r" / "msa")

    class XlaRuntimeError(RuntimeError):
        pass

    def boom(self, *args, **kwargs):
        raise XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 81.00GiB.")

    monkeypatch.setattr(af_model.RunModel, "predict", boom)
    result = invoke(["predict", "--run-id", "r", "--target", TARGET, "--scratch", str(scratch),
                     "--weights", str(weights), "--engine", "alphafold2", "--preset", "monomer"])
    assert result.exit_code == 3, result.output


def test_alphafold2_needs_features(scratch, weights, monkeypatch):
    """Features not visible (yet) are retryable (exit 75 after the bounded wait), never bad
    input: on FSx msa's output may still be importing (tests/steps/test_steps_readiness.py)."""
    monkeypatch.setenv("FOLDSTACK_INPUT_WAIT_S", "0")
    result = invoke(["predict", "--run-id", "r", "--target", TARGET, "--scratch", str(scratch),
                     "--weights", str(weights), "--engine", "alphafold2", "--preset", "monomer"])
    text = " ".join(result.output.split())
    assert result.exit_code == 75 and "[inputs_not_ready]" in text and "features.npz is not visible" in text


@pytest.mark.slow
def test_alphafold2_end_to_end(msa_done, scratch, weights):
    """msa features → AlphaFold2 (JIT compile; cached across runs) → every output."""
    from foldstack.steps.predict import run_predict

    src_scratch, run_id = msa_done
    shutil.copytree(src_scratch / run_id / "msa", scratch / "r" / "msa")
    (scratch / "r" / "input").mkdir()  # predict must not need the FASTA: there is none
    out = run_predict("r", TARGET, scratch, weights, "alphafold2", "monomer")
    metrics = _check_outputs(out, "alphafold2", len(DEMO_SEQ))
    assert metrics["model_name"] == "model_5_ptm"
    done = json.loads((out / "predict.done.json").read_text())
    assert "msa/HG003687_68/features.npz" in done["inputs"]
    assert "jax" in done["tool_versions"]
