"""Plan Batches and MSA cache Lambdas (batching, fan-out mode, per-target MSA cache), on local directories."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json

import numpy as np
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


def features_npz(length, rows=2, **changes):
    """A features.npz Predict can load (AlphaFold's monomer features, all zeros), as bytes;
    `changes` replace (None: drop) arrays."""
    arrays = {
        "aatype": np.zeros((length, 21), np.int32), "between_segment_residues": np.zeros(length, np.int32),
        "residue_index": np.arange(length, dtype=np.int32), "seq_length": np.full(length, length, np.int32),
        "num_alignments": np.full(length, rows, np.int32), "msa": np.zeros((rows, length), np.int32),
        "deletion_matrix_int": np.zeros((rows, length), np.int32),
        "template_aatype": np.zeros((1, length, 22), np.float32),
        "template_all_atom_masks": np.zeros((1, length, 37), np.float32),
        "template_all_atom_positions": np.zeros((1, length, 37, 3), np.float32),
    }
    arrays.update(changes)
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v for k, v in arrays.items() if v is not None})
    return buf.getvalue()


def fake_msa(scratch, run_id, tid, versions, length=30, npz=None):
    d = scratch / run_id / "msa" / tid
    d.mkdir(parents=True)
    files = {"msa.a3m": b">q\nMKT\n", "features.npz": features_npz(length) if npz is None else npz,
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
    [key] = list(cache_env["cache"].glob("msa/jackhmmer-reduced_dbs/*/*"))  # search label: tool and preset
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
    assert out["hit"] is False and out["reason"] == "damaged: msa.a3m does not match cache.json"
    assert not (cache_env["scratch"] / "r5" / "msa").exists()


# -- damaged entries: a miss with a reason, repaired by the next fill -----------------------


def _filled_entry(cache_env, tid, length=30):
    """A target whose entry a first run (r1) stored; returns (lookup, target, request, entry dir)."""
    from foldstack.tasks.msa_cache import fill
    from foldstack.tasks.settings import TaskSettings

    lookup = handler("msa_cache")
    t = batch_target(tid, length)
    request = {"inputs": [{"id": tid, "sequence": "M" * length}], "output_uri": str(cache_env["outputs"]),
               "engine": "alphafold2"}
    assert lookup({"run_id": "r1", "request": request, "target": t})["reason"] == "not cached"
    fake_msa(cache_env["scratch"], "r1", tid, {"uniref": "2024_01"}, length)
    assert fill(TaskSettings.from_env(), "r1", [t])["stored"] == 1
    [entry] = [p.parent for p in cache_env["cache"].rglob("cache.json")]
    return lookup, t, request, entry


def _resign(entry, name, data):
    """Replace one file of an entry and re-sign cache.json: its checksums pass, only the
    content check can tell (a writer bug, a file damaged before it was hashed)."""
    (entry / name).write_bytes(data)
    marker = json.loads((entry / "cache.json").read_text())
    marker["files"][name] = hashlib.sha256(data).hexdigest()
    (entry / "cache.json").write_text(json.dumps(marker))


def _pickled_object_npz():
    buf = io.BytesIO()
    np.savez(buf, domain_name=np.array([object()], dtype=object))
    return buf.getvalue()


DAMAGED_FEATURES = {
    "truncated": (lambda good: good[: len(good) // 2], "features.npz does not load"),
    "truncated_tail": (lambda good: good[:-9], "features.npz does not load"),
    "garbled": (lambda good: b"\x00garbage" * 40, "features.npz does not load"),
    "pickled_object_array": (lambda good: _pickled_object_npz(), "features.npz does not load"),
    "npy_not_npz": (lambda good: (lambda b: (np.save(b, np.zeros(3)), b.getvalue())[1])(io.BytesIO()),
                    "features.npz does not load"),
    "missing_msa": (lambda good: features_npz(30, msa=None), "features.npz lacks msa"),
    "wrong_length": (lambda good: features_npz(29), "features.npz aatype has shape (29, 21), expected (30, 21)"),
    "strings_for_numbers": (lambda good: features_npz(30, msa=np.full((2, 30), b"A")),
                            "features.npz msa has dtype |S1"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_FEATURES))
def test_features_predict_cannot_load_are_a_miss_and_the_fill_repairs_them(cache_env, damage):
    """An entry whose files pass their checksums but whose features.npz Predict could not
    load is a miss naming why; the Msa job's output then replaces it and the next lookup hits."""
    from foldstack.steps.common import load_valid_done
    from foldstack.tasks.msa_cache import fill
    from foldstack.tasks.settings import TaskSettings

    lookup, t, request, entry = _filled_entry(cache_env, "d1")
    make, reason = DAMAGED_FEATURES[damage]
    _resign(entry, "features.npz", make((entry / "features.npz").read_bytes()))

    miss = lookup({"run_id": "r2", "request": request, "target": t})
    assert miss["hit"] is False and miss["reason"].startswith(f"damaged: {reason}"), miss["reason"]
    assert miss["cache_root"] == str(cache_env["cache"])  # the Msa job still gets the chain cache
    assert not (cache_env["scratch"] / "r2" / "msa").exists()  # nothing served

    fake_msa(cache_env["scratch"], "r2", "d1", {"uniref": "2024_01"})  # the Msa job recomputed it
    assert fill(TaskSettings.from_env(), "r2", [t]) == {"stored": 1, "skipped": 0, "failed": 0}
    marker = json.loads((entry / "cache.json").read_text())
    assert marker["source_run"] == "r2" and marker["repaired"] == miss["reason"]

    hit = lookup({"run_id": "r3", "request": request, "target": t})
    assert hit == {**hit, "hit": True, "reason": "cached"}
    assert load_valid_done(cache_env["scratch"] / "r3" / "msa" / "d1", "msa", "r3", "d1") is not None


@pytest.mark.parametrize("broken", ["checksum", "missing_file", "marker_not_json", "marker_without_files",
                                    "features_json_not_json"])
def test_other_damage_is_a_miss_with_its_reason_and_repaired(cache_env, broken):
    from foldstack.tasks.msa_cache import fill
    from foldstack.tasks.settings import TaskSettings

    lookup, t, request, entry = _filled_entry(cache_env, "d2")
    if broken == "checksum":  # a truncated object, cache.json untouched
        data = (entry / "features.npz").read_bytes()
        (entry / "features.npz").write_bytes(data[:-100])
        reason = "damaged: features.npz does not match cache.json"
    elif broken == "missing_file":
        (entry / "msa.a3m").unlink()
        reason = "damaged: msa.a3m is missing"
    elif broken == "marker_not_json":
        (entry / "cache.json").write_text('{"files": ')
        reason = "damaged: cache.json is not JSON"
    elif broken == "marker_without_files":
        (entry / "cache.json").write_text("{}")
        reason = "damaged: cache.json does not list msa.a3m, features.npz, features.json"
    else:
        _resign(entry, "features.json", b"{not json")
        reason = "damaged: features.json is not JSON"

    miss = lookup({"run_id": "r2", "request": request, "target": t})
    assert (miss["hit"], miss["reason"]) == (False, reason)
    record = json.loads((cache_env["scratch"] / "r2" / "cache" / "d2.json").read_text())
    assert record["reason"] == reason and record["length"] == 30
    fake_msa(cache_env["scratch"], "r2", "d2", {"uniref": "2024_01"})
    assert fill(TaskSettings.from_env(), "r2", [t])["stored"] == 1
    assert lookup({"run_id": "r3", "request": request, "target": t})["hit"] is True


def test_fill_leaves_a_valid_entry_untouched_and_replaces_a_marker_less_one(cache_env):
    from foldstack.tasks.msa_cache import fill
    from foldstack.tasks.settings import TaskSettings

    lookup = handler("msa_cache")
    t = batch_target("d3", 30)
    request = {"inputs": [{"id": "d3", "sequence": "M" * 30}], "output_uri": str(cache_env["outputs"]),
               "engine": "alphafold2"}
    # two runs miss the same target; r1 fills first, r0 after it: the valid entry stays r1's
    for run_id in ("r0", "r1"):
        assert lookup({"run_id": run_id, "request": request, "target": t})["hit"] is False
        fake_msa(cache_env["scratch"], run_id, "d3", {"uniref": "2024_01"})
    assert fill(TaskSettings.from_env(), "r1", [t])["stored"] == 1
    [entry] = [p.parent for p in cache_env["cache"].rglob("cache.json")]
    before = {p.name: p.read_bytes() for p in entry.iterdir()}
    assert fill(TaskSettings.from_env(), "r0", [t]) == {"stored": 0, "skipped": 1, "failed": 0}
    assert {p.name: p.read_bytes() for p in entry.iterdir()} == before

    # files without their marker (a fill that died before writing it): not an entry
    (entry / "cache.json").unlink()
    (entry / "features.npz").write_bytes(b"half written")
    miss = lookup({"run_id": "r4", "request": request, "target": t})
    assert (miss["hit"], miss["reason"]) == (False, "not cached")
    fake_msa(cache_env["scratch"], "r4", "d3", {"uniref": "2024_01"})
    assert fill(TaskSettings.from_env(), "r4", [t])["stored"] == 1
    assert "repaired" not in json.loads((entry / "cache.json").read_text())
    assert lookup({"run_id": "r5", "request": request, "target": t})["hit"] is True


def test_fill_never_stores_features_the_lookup_would_refuse(cache_env):
    from foldstack.tasks.msa_cache import fill
    from foldstack.tasks.settings import TaskSettings

    lookup = handler("msa_cache")
    t = batch_target("d4", 30)
    request = {"inputs": [{"id": "d4", "sequence": "M" * 30}], "output_uri": str(cache_env["outputs"]),
               "engine": "alphafold2"}
    lookup({"run_id": "r1", "request": request, "target": t})
    fake_msa(cache_env["scratch"], "r1", "d4", {"uniref": "2024_01"}, npz=features_npz(12))  # wrong length
    assert fill(TaskSettings.from_env(), "r1", [t]) == {"stored": 0, "skipped": 1, "failed": 0}
    assert not list(cache_env["cache"].rglob("cache.json"))


def test_the_msa_cache_zip_carries_the_features_check(tmp_path):
    """The Lambda zip holds what the lookup imports (the cache keys, the features check),
    and nothing of the steps: it runs from the unzipped package alone."""
    import subprocess
    import sys
    import zipfile

    spec = importlib.util.spec_from_file_location("build_lambdas", REPO / "scripts" / "build_lambdas.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    builder.build(tmp_path / "zips", ["msa_cache"])
    root = tmp_path / "unzipped"
    with zipfile.ZipFile(tmp_path / "zips" / "msa_cache.zip") as zf:
        assert not any(n.startswith("foldstack/steps/") for n in zf.namelist())
        zf.extractall(root)
    (tmp_path / "good.npz").write_bytes(features_npz(30))
    probe = (
        "import sys, foldstack, handler\n"
        "from foldstack.core.npz import FeaturesFileError, check_features\n"
        f"assert foldstack.__file__.startswith({str(root)!r}), foldstack.__file__\n"
        "assert 'foldstack.steps' not in sys.modules\n"
        f"check_features(open({str(tmp_path / 'good.npz')!r}, 'rb').read(), 30)\n"
        "try:\n    check_features(b'PK\\x03\\x04 truncated', 30)\nexcept FeaturesFileError as exc:\n    print(exc)\n"
    )
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("does not load"), result.stderr
