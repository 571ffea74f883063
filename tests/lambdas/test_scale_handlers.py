"""Plan Batches and MSA cache Lambdas (batching, fan-out mode, per-target MSA cache), on local directories."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import pytest
from tests.conftest import REPO

from foldstack.core.errors import InputValidationError


def handler(name):
    spec = importlib.util.spec_from_file_location(f"scale_{name}", REPO / "lambdas" / name / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def target(tid, length, size_class="small"):
    return {"id": tid, "length": length, "chains": 1, "sha256": hashlib.sha256(tid.encode()).hexdigest(),
            "size_class": size_class}


def batch_target(tid, length):
    """A target as a Plan Batches batch carries it: what the MSA cache lookup gets."""
    return {k: v for k, v in target(tid, length).items() if k != "size_class"}


def test_plan_packs_per_class_sorted_by_length(local_env):
    targets = [target("a", 300), target("b", 50), target("c", 900, "medium"), target("d", 120), target("e", 60)]
    out = handler("plan_batches")({"run_id": "r1", "targets": targets, "max_targets_per_job": 2,
                                   "bulk_threshold": 10})
    assert out["mode"] == "inline" and out["manifest"] is None
    assert [(b["size_class"], b["target_ids"]) for b in out["batches"]] == [
        ("small", "b,e"), ("small", "d,a"), ("medium", "c")]
    assert not (local_env["scratch"] / "r1").exists()  # inline: nothing written


def test_plan_above_threshold_writes_the_manifest_for_the_item_reader(local_env):
    targets = [target(f"t{i}", 50 + i) for i in range(5)]
    out = handler("plan_batches")({"run_id": "r2", "targets": targets, "max_targets_per_job": 2,
                                   "bulk_threshold": 4})
    assert out["mode"] == "distributed" and out["batches"] == [] and out["n_batches"] == 3
    path = local_env["scratch"] / out["manifest"]["key"]
    assert out["manifest"]["bucket"] == str(local_env["scratch"])
    assert [b["target_ids"] for b in json.loads(path.read_text())] == ["t0,t1", "t2,t3", "t4"]


def test_plan_rejects_bad_knobs_and_unknown_classes(local_env):
    with pytest.raises(InputValidationError):
        handler("plan_batches")({"run_id": "r", "targets": [target("a", 5)], "max_targets_per_job": 0,
                                 "bulk_threshold": 1})
    with pytest.raises(InputValidationError):
        handler("plan_batches")({"run_id": "r", "targets": [target("a", 5, "huge")], "max_targets_per_job": 2,
                                 "bulk_threshold": 1})


@pytest.fixture
def cache_env(local_env, tmp_path, monkeypatch):
    db = tmp_path / "db"
    (db / "uniref").mkdir(parents=True)
    (db / "uniref" / "CURRENT").write_text("2024_01\n")
    (db / "weights").mkdir()  # no CURRENT: not a database
    monkeypatch.setenv("FOLDSTACK_DB_ROOT", str(db))
    monkeypatch.setenv("FOLDSTACK_CACHE_ROOT", str(tmp_path / "cache"))
    return {**local_env, "db": db, "cache": tmp_path / "cache"}


def fake_msa(scratch, run_id, tid, versions):
    d = scratch / run_id / "msa" / tid
    d.mkdir(parents=True)
    files = {"msa.a3m": b">q\nMKT\n", "features.npz": b"npz-bytes",
             "features.json": json.dumps({"databases": [{"name": n, "version": v} for n, v in versions.items()]}
                                         ).encode()}
    for name, data in files.items():
        (d / name).write_bytes(data)
    done = {"step": "msa", "run_id": run_id, "target": tid,
            "outputs": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}}
    (d / "msa.done.json").write_text(json.dumps(done))


def test_cache_miss_fill_then_hit_materialises_a_valid_done(cache_env):
    from foldstack.steps.common import load_valid_done
    from foldstack.tasks.msa_cache import fill
    from foldstack.tasks.settings import TaskSettings

    lookup = handler("msa_cache")
    t = batch_target("q1", 30)
    request = {"inputs": [{"id": "q1", "sequence": "M" * 30}], "output_uri": str(cache_env["outputs"]),
               "engine": "alphafold2"}
    miss = lookup({"run_id": "r1", "request": request, "target": t})
    assert miss["hit"] is False and miss["cache_root"] == str(cache_env["cache"])  # for the Msa job's chain cache
    assert lookup({"run_id": "r0", "request": {**request, "reuse_msa": False}, "target": t})["cache_root"] == ""
    fake_msa(cache_env["scratch"], "r1", "q1", {"uniref": "2024_01"})
    assert fill(TaskSettings.from_env(), "r1", [t]) == {"stored": 1, "skipped": 0, "failed": 0}
    [key] = list(cache_env["cache"].glob("msa/jackhmmer/*/*"))
    assert key.name == t["sha256"] and "uniref@2024_01" in key.parent.name

    out = lookup({"run_id": "r2", "request": request, "target": t})
    assert out["hit"] is True
    final = cache_env["scratch"] / "r2" / "msa" / "q1"
    done = load_valid_done(final, "msa", "r2", "q1")
    assert done is not None and done["cache"]["hit"] is True
    assert (final / "msa.a3m").read_bytes() == b">q\nMKT\n"

    # a refreshed database changes the key: a miss, never a stale alignment
    (cache_env["db"] / "uniref" / "CURRENT").write_text("2025_01\n")
    assert lookup({"run_id": "r3", "request": request, "target": t})["hit"] is False


def test_damaged_entry_is_a_miss_and_changed_db_is_not_filled(cache_env):
    from foldstack.tasks.msa_cache import fill
    from foldstack.tasks.settings import TaskSettings

    lookup = handler("msa_cache")
    t = batch_target("q2", 30)
    request = {"inputs": [{"id": "q2", "sequence": "M" * 30}], "output_uri": str(cache_env["outputs"]),
               "engine": "alphafold2"}
    lookup({"run_id": "r1", "request": request, "target": t})
    fake_msa(cache_env["scratch"], "r1", "q2", {"uniref": "2023_09"})  # the job saw another version
    assert fill(TaskSettings.from_env(), "r1", [t])["skipped"] == 1
    assert not list(cache_env["cache"].rglob("cache.json"))

    lookup({"run_id": "r4", "request": request, "target": t})
    fake_msa(cache_env["scratch"], "r4", "q2", {"uniref": "2024_01"})
    assert fill(TaskSettings.from_env(), "r4", [t])["stored"] == 1
    [a3m] = list(cache_env["cache"].rglob("msa.a3m"))
    a3m.write_bytes(b"tampered")
    out = lookup({"run_id": "r5", "request": request, "target": t})
    assert out["hit"] is False and out["reason"] == "cache entry damaged"
    assert not (cache_env["scratch"] / "r5" / "msa").exists()
