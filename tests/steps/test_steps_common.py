"""The shared step contract helper and the demo data builder."""

from __future__ import annotations

import json

import pytest

from foldstack.core.errors import BadInputError, OutOfMemoryError, is_out_of_memory
from foldstack.core.hashing import sha256_file
from foldstack.steps import common
from foldstack.steps.common import exit_code_for, run_step


def _write(name="out.txt", text="hello"):
    def body(ctx):
        (ctx.work_dir / name).write_text(text)
        ctx.tool_versions["x"] = "1"

    return body


def test_run_step_promotes_and_records(tmp_path):
    final = run_step("demo", "run-1", "t1", tmp_path, _write())
    assert final == tmp_path / "run-1" / "demo" / "t1"
    done = json.loads((final / "demo.done.json").read_text())
    assert done["outputs"] == {"out.txt": sha256_file(final / "out.txt")}
    assert done["step"] == "demo" and done["run_id"] == "run-1" and done["target"] == "t1"
    assert done["started_at"] <= done["finished_at"] and "total" in done["timings"]
    assert [p.name for p in final.parent.iterdir()] == ["t1"]


def test_invalid_final_dir_is_replaced(tmp_path):
    final = tmp_path / "r" / "demo" / "t1"
    final.mkdir(parents=True)
    (final / "junk").write_text("half-written by someone else")
    run_step("demo", "r", "t1", tmp_path, _write())
    assert sorted(p.name for p in final.iterdir()) == ["demo.done.json", "out.txt"]
    assert [p.name for p in final.parent.iterdir()] == ["t1"]


def test_failure_leaves_nothing(tmp_path):
    def body(ctx):
        (ctx.work_dir / "partial").write_text("x")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        run_step("demo", "r", "t1", tmp_path, body)
    assert list((tmp_path / "r" / "demo").iterdir()) == []


@pytest.mark.parametrize("run_id,target", [("../x", "t"), ("r", "../t"), ("r", "a/b"), ("", "t"), ("r", "")])
def test_unsafe_ids_are_bad_input(tmp_path, run_id, target):
    with pytest.raises(BadInputError):
        run_step("demo", run_id, target, tmp_path, _write())
    assert list(tmp_path.iterdir()) == []


def test_fault_spec_matching(tmp_path, monkeypatch):
    monkeypatch.setenv(common.FAULT_ENV, "other:t1, demo:t2")
    run_step("demo", "r", "t1", tmp_path, _write())
    with pytest.raises(RuntimeError, match="injected fault"):
        run_step("demo", "r", "t2", tmp_path, _write())


def test_oom_classification():
    class XlaRuntimeError(RuntimeError):
        pass

    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 3GiB"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory."))
    try:
        try:
            raise MemoryError()
        except MemoryError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as exc:
        assert is_out_of_memory(exc)
    assert not is_out_of_memory(ValueError("nope"))
    assert exit_code_for(OutOfMemoryError("x")) == 3
    assert exit_code_for(BadInputError("x")) == 2
    assert exit_code_for(KeyError("x")) is None


def test_demo_data_is_idempotent_and_credited(demo_home):
    import time

    from foldstack.core.fasta import parse_fasta
    from foldstack.demo_data import build_demo_data, example_fasta
    from foldstack.steps.databases import msa_databases

    manifest = next((demo_home / "db" / "demo_uniref").glob("*/manifest.json"))
    before = manifest.read_text()
    t = time.perf_counter()
    build_demo_data(demo_home)
    assert time.perf_counter() - t < 5
    assert manifest.read_text() == before
    db, small_bfd, mgnify = msa_databases(demo_home / "db")  # every reduced_dbs role, in role order
    assert (db.name, small_bfd.name, mgnify.name) == ("demo_uniref", "demo_small_bfd", "demo_mgnify")
    assert db.role == "uniref90" and db.manifest["files"]["demo_uniref.fasta"]["bytes"] > 500_000
    assert db.roles == ("uniref90", "colabfold_uniref30") and mgnify.roles == ("mgnify", "colabfold_envdb")
    assert db.sequence_count == 2122 and small_bfd.sequence_count == 22 and mgnify.sequence_count == 10
    assert "CC BY 4.0" in mgnify.manifest["license"] and "BGC0001090" in mgnify.manifest["source"]
    assert "CC BY 4.0" in db.manifest["license"]
    text = db.sequences.read_text()
    assert text.count(">") == 2122 and "*" not in text
    (record,) = parse_fasta(example_fasta().read_bytes())
    assert f">{record.id}" in text.replace(">938293.PRJEB85.", ">")
    readme = (example_fasta().parent.parent / "README.md").read_text()
    assert "UniProt" in readme and "CC BY 4.0" in readme
