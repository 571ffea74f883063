"""Provenance: what code, image, job definition and weights made each step's result
(`foldstack.core.provenance`), in the done records and the manifest."""

from __future__ import annotations

import json
import subprocess

import pytest
from tests.conftest import REPO

from foldstack.core import provenance
from foldstack.core.hashing import sha256_file
from foldstack.core.manifest import STEP_PROVENANCE_KEYS, Manifest, StepProvenance
from foldstack.core.provenance import build_info, recording, run_provenance, weights_identity
from foldstack.steps.common import run_step


@pytest.fixture
def fresh_commit(monkeypatch):
    """git_commit() looks the package file / checkout up once per process: forget it."""
    monkeypatch.delenv(provenance.GIT_COMMIT_ENV, raising=False)
    provenance._commit_from_package_or_checkout.cache_clear()
    yield
    provenance._commit_from_package_or_checkout.cache_clear()


def test_git_commit_env_then_package_file_then_checkout_then_unknown(fresh_commit, monkeypatch, tmp_path):
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert provenance.git_commit() == head  # running from this checkout

    monkeypatch.setenv(provenance.GIT_COMMIT_ENV, "abc123")  # an image built with the build arg
    assert provenance.git_commit() == "abc123"
    monkeypatch.delenv(provenance.GIT_COMMIT_ENV)

    package = tmp_path / "site" / "src" / "foldstack"  # an installed package: no .git above it
    package.mkdir(parents=True)
    monkeypatch.setattr(provenance, "_package_dir", lambda: package)
    provenance._commit_from_package_or_checkout.cache_clear()
    assert provenance.git_commit() == "unknown"
    (package / provenance.COMMIT_FILE).write_text("fedcba9\n")  # written by a build without git
    provenance._commit_from_package_or_checkout.cache_clear()
    assert provenance.git_commit() == "fedcba9"


def test_build_info_names_image_and_job_definition_from_the_job_environment(monkeypatch):
    monkeypatch.delenv(provenance.IMAGE_ENV, raising=False)
    monkeypatch.delenv(provenance.JOB_DEFINITION_ENV, raising=False)
    info = build_info()
    assert info["image"] is None and info["job_definition"] is None  # local: neither
    from foldstack import __version__

    assert info["foldstack_version"] == __version__ and info["git_commit"]
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/foldstack-dev/predict:0a1b2c"
    jobdef = "arn:aws:batch:eu-west-1:123456789012:job-definition/foldstack-dev-fold-predict-small:7"
    monkeypatch.setenv(provenance.IMAGE_ENV, image)
    monkeypatch.setenv(provenance.JOB_DEFINITION_ENV, jobdef)
    with recording(weights={"digest": "d"}):
        inner = build_info()
    assert (inner["image"], inner["job_definition"], inner["weights"]) == (image, jobdef, {"digest": "d"})
    assert "weights" not in build_info()  # only while recording


def test_every_done_record_carries_the_build_block_and_collect_copies_it(tmp_path, monkeypatch):
    monkeypatch.setenv(provenance.IMAGE_ENV, "registry/msa:abc")
    monkeypatch.setenv(provenance.JOB_DEFINITION_ENV, "arn:aws:batch:r:1:job-definition/msa:3")

    def body(ctx):
        (ctx.work_dir / "out.txt").write_text("x")

    with recording(weights={"engine": "esmfold", "digest": "w1"}):
        final = run_step("demo", "run-1", "t1", tmp_path, body)
    done = json.loads((final / "demo.done.json").read_text())
    assert done["build"]["image"] == "registry/msa:abc"
    assert done["build"]["job_definition"].endswith("job-definition/msa:3")
    assert done["build"]["weights"] == {"engine": "esmfold", "digest": "w1"}
    assert "build" in STEP_PROVENANCE_KEYS  # what Collect Outputs copies into provenance.<step>
    step = StepProvenance.model_validate({k: done.get(k) for k in STEP_PROVENANCE_KEYS})
    assert step.build["image"] == "registry/msa:abc"


def _fake_weights(path, *, marker: bool):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"\x00" * 64)
    if marker:
        (path / "DEMO_WEIGHTS").write_text("{}")
    return path


def test_weights_identity_hashes_files_or_reads_the_installers_record(tmp_path):
    w = _fake_weights(tmp_path / "w" / "esmfold", marker=True)
    hashed = weights_identity(w, record_name="FETCHED.json", demo_marker="DEMO_WEIGHTS")
    assert hashed["engine"] == "esmfold" and hashed["demo"] is True and hashed["source"] == "hashed"
    assert hashed["files"]["model.safetensors"] == sha256_file(w / "model.safetensors")
    (w / "model.safetensors").write_bytes(b"\x01" * 64)  # other weights: another digest
    assert weights_identity(w, record_name="FETCHED.json", demo_marker="DEMO_WEIGHTS")["digest"] != hashed["digest"]

    real = _fake_weights(tmp_path / "r" / "alphafold2", marker=False)
    record = {"engine": "alphafold2", "source": "https://example.org/params.tar", "revision": None,
              "files": {"params_model_1.npz": "a" * 64}}
    (real / "FETCHED.json").write_text(json.dumps(record))
    fetched = weights_identity(real, record_name="FETCHED.json", demo_marker="DEMO_WEIGHTS")
    assert fetched["source"] == "record" and fetched["files"] == record["files"] and fetched["demo"] is False
    assert fetched["origin"] == record["source"] and fetched["record_sha256"] == sha256_file(real / "FETCHED.json")


def _target(tid, *, dbs, image, jobdef, weights_digest, commit="c1"):
    build = {"foldstack_version": "0.1.0", "git_commit": commit, "image": image, "job_definition": jobdef}
    return {"id": tid, "provenance": {
        "msa": {"build": build, "databases": dbs, "db_preset": "reduced_dbs"},
        "predict": {"build": {**build, "weights": {"engine": "alphafold2", "demo": True, "source": "hashed",
                                                   "digest": weights_digest, "files": {"p.npz": "0" * 64}}}},
    }}


def test_run_provenance_gathers_images_job_definitions_weights_and_database_versions():
    targets = [
        _target("a", dbs={"uniref90": "v1", "mgnify": "m1"}, image="img:1", jobdef="jd:3", weights_digest="w"),
        _target("b", dbs={"uniref90": "v1"}, image="img:1", jobdef="jd:4", weights_digest="w", commit="c2"),
    ]
    prov = run_provenance(targets)
    assert prov["databases"] == {"mgnify": "m1", "uniref90": "v1"} and "databases_mixed" not in prov
    assert prov["steps"]["msa"] == {"images": ["img:1"], "job_definitions": ["jd:3", "jd:4"],
                                    "code": ["0.1.0+c1", "0.1.0+c2"]}
    assert prov["weights"] == [{"engine": "alphafold2", "demo": True, "source": "hashed", "digest": "w"}]
    assert prov["db_preset"] == ["reduced_dbs"]
    assert prov["collected_by"]["foldstack_version"] == "0.1.0"

    targets.append(_target("c", dbs={"uniref90": "v2"}, image="img:1", jobdef="jd:4", weights_digest="w"))
    mixed = run_provenance(targets)
    assert mixed["databases"] == {"mgnify": "m1"} and mixed["databases_mixed"] == {"uniref90": ["v1", "v2"]}


def test_manifest_keeps_run_provenance_and_older_manifests_still_load():
    fixture = REPO / "tests" / "fixtures" / "manifests" / "schema1-foldstack-0.1.0-alphafold2.json"
    raw = json.loads(fixture.read_text())
    old = Manifest.model_validate(raw)
    assert old.provenance == {} and "provenance" not in old.to_dict()
    new = Manifest.model_validate({**raw, "provenance": run_provenance(old.targets)})
    assert new.to_dict()["provenance"]["collected_by"]["git_commit"]
