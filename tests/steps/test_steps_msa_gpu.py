"""GPU MMseqs2 wired end to end on paper: the request asks (``msa_gpu``), the fold workflow
runs its chain search phase on jobs.yaml's ``msa_gpu`` job (a GPU queue) with
``FOLDSTACK_MMSEQS_GPU=1``, and the job picks the image's CUDA build of MMseqs2 for both the
search and the GPU index. No GPU here: the binary is a stand-in that logs its argv.
"""

from __future__ import annotations

import json
import os

import pytest

from foldstack.core.request import RunRequest
from foldstack.workflows.render import render_definition
from foldstack.workflows.specs import load_workflow


@pytest.fixture(scope="module")
def fold():
    return load_workflow("fold")


def test_msa_gpu_is_an_msa_class_on_a_gpu_queue(fold):
    jobs = fold.jobs
    gpu, cpu = jobs.jobs["msa_gpu"], jobs.jobs["msa"]
    assert gpu.image == cpu.image == "msa"  # one MSA image: it carries both MMseqs2 builds
    assert jobs.queues[gpu.queue].tier == "gpu" and gpu.resources_for().gpus == 1
    assert gpu.command[:3] == ["foldstack", "step", "msa-chains"] and gpu.parameters["msa_tool"] == "mmseqs2"
    assert jobs.queues[cpu.queue].tier == "cpu" and cpu.resources_for().gpus == 0  # CPU searches stay on CPU


def test_fold_sends_gpu_requests_chain_search_to_msa_gpu_with_the_env(fold):
    states = render_definition(fold)["States"]
    choices = states["ChooseChainSearch"]["Choices"]
    to_gpu = [i for i, c in enumerate(choices) if c["Next"] == "SearchChainsGpu"]
    single = [i for i, c in enumerate(choices) if c.get("Variable") == "$.validated.n_targets"][0]
    assert to_gpu and to_gpu[0] < single  # a GPU request of one target uses it too
    assert {"Variable": "$.request.msa_gpu", "BooleanEquals": True} in choices[to_gpu[0]]["And"]

    phase = states["SearchChainsGpu"]  # a Parallel of one branch, as SearchChains: its own catch is the cleanup
    assert phase["Type"] == "Parallel" and phase["Next"] == "ChooseFanOut" and phase["ResultPath"] is None
    (branch,) = phase["Branches"]
    task = branch["States"]["MsaChainsGpu"]
    params = task["Parameters"]
    assert params["JobDefinition"] == "${job_definition_msa_gpu_arn}"
    assert params["JobQueue"] == f"${{queue_{fold.jobs.jobs['msa_gpu'].queue.replace('-', '_')}_arn}}"
    env = {e["Name"]: e["Value"] for e in params["ContainerOverrides"]["Environment"]}
    assert env["FOLDSTACK_MMSEQS_GPU"] == "1"
    assert task["End"] is True and task["Catch"][0]["Next"] == "ChainSearchGpuNotDone"
    assert branch["States"]["ChainSearchGpuNotDone"] == {  # not fatal: the Msa jobs search instead
        "Comment": "Not fatal: the per-target Msa jobs search what the GPU job did not store.", "Type": "Pass",
        "End": True}
    # the CPU chain shards never set it
    text = json.dumps(states["SearchChains"])
    assert "FOLDSTACK_MMSEQS_GPU" not in text and "job_definition_msa_arn" in text


def test_request_asks_for_gpu_search_only_with_mmseqs2():
    req = RunRequest(inputs=("x.fasta",), output_uri="/o", db_preset="colabfold", msa_gpu=True)
    assert req.msa_gpu and req.msa_tool == "mmseqs2"
    assert RunRequest(inputs=("x.fasta",), output_uri="/o", msa_tool="mmseqs2", msa_gpu=True).msa_gpu
    assert RunRequest(inputs=("x.fasta",), output_uri="/o").msa_gpu is False
    with pytest.raises(ValueError, match="msa_gpu searches with MMseqs2"):
        RunRequest(inputs=("x.fasta",), output_uri="/o", msa_gpu=True)  # jackhmmer by default


def test_run_id_does_not_change_with_gpu_search():
    from foldstack.core.fasta import FastaRecord
    from foldstack.core.runid import make_run_id

    records = [FastaRecord(id="t", chains=("MKV",))]
    cpu = RunRequest(inputs=("x.fasta",), output_uri="/o", msa_tool="mmseqs2")
    gpu = RunRequest(inputs=("x.fasta",), output_uri="/o", msa_tool="mmseqs2", msa_gpu=True)
    assert make_run_id(cpu, records) == make_run_id(gpu, records)


def test_gpu_jobs_use_the_cuda_build_for_index_and_search(tmp_path, monkeypatch):
    """FOLDSTACK_MMSEQS_GPU_BINARY (the image's CUDA build) serves GPU work only: the GPU
    index is built and named by it, a GPU job searches with it; CPU work keeps Debian's."""
    from foldstack.steps import mmseqs
    from foldstack.steps.databases import Database
    from tests.steps.test_steps_mmseqs import FAKE_MMSEQS

    cuda = tmp_path / "cuda" / "mmseqs"
    cuda.parent.mkdir()
    cuda.write_text(FAKE_MMSEQS)
    cuda.chmod(0o755)
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.delenv(mmseqs.BINARY_ENV, raising=False)
    monkeypatch.delenv(mmseqs.GPU_ENV, raising=False)
    monkeypatch.setenv(mmseqs.GPU_BINARY_ENV, str(cuda))
    assert mmseqs.mmseqs_binary(gpu=True) == str(cuda)
    assert mmseqs.mmseqs_binary() != str(cuda)  # a CPU job (no FOLDSTACK_MMSEQS_GPU): not the CUDA build

    version_dir = tmp_path / "db" / "x" / "v1"
    version_dir.mkdir(parents=True)
    (version_dir / "x.fasta").write_text(">a\nMKVLAAGIVG\n")
    db = Database(name="x", version="v1", path=version_dir, manifest={"sequences": "x.fasta"}, manifest_sha256="0")
    mmseqs.mmseqs_version.cache_clear()
    try:
        index = mmseqs.build_target_index(db, gpu=True)  # no binary given: the CUDA build's
        assert index.name == "18.8cc5c-fake-gpu"
        monkeypatch.setenv(mmseqs.GPU_ENV, "1")
        monkeypatch.setenv(mmseqs.INDEX_ENV, "prebuilt")
        assert mmseqs.mmseqs_binary() == str(cuda)
        a3m, info = mmseqs.search_a3m("MKVLAAGIVG", "q0", db, cpus=1, work_dir=tmp_path / "work")
        assert info["gpu"] is True and info["index"] == str(index)
        assert any(ln.startswith("search") and "--gpu 1" in ln for ln in log.read_text().splitlines())
        monkeypatch.setenv(mmseqs.BINARY_ENV, "/opt/other/mmseqs")  # an explicit binary still wins
        assert mmseqs.mmseqs_binary() == "/opt/other/mmseqs"
    finally:
        mmseqs.stop_gpu_servers()
        mmseqs.mmseqs_version.cache_clear()


def test_refresh_builds_the_gpu_index_with_the_cuda_build(tmp_path, monkeypatch):
    """A refreshed version with ``mmseqs_gpu_index``: its CPU index by Debian's MMseqs2, its
    GPU index by the CUDA build (named by that build's version: what GPU jobs look for)."""
    from foldstack.steps import mmseqs
    from foldstack.steps.refresh_db_source import DatabaseSpec, _build_indexes
    from tests.steps.test_steps_mmseqs import FAKE_MMSEQS

    binaries = {}
    for kind, version in (("cpu", "14.7e284-fake"), ("cuda", "18.8cc5c-fake")):
        path = tmp_path / kind / "mmseqs"
        path.parent.mkdir()
        path.write_text(FAKE_MMSEQS.replace('echo "18.8cc5c-fake"', f'echo "{version}"')
                        .replace('echo "$*"', f'echo "{kind} $*"'))
        path.chmod(0o755)
        binaries[kind] = path
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.delenv(mmseqs.BINARY_ENV, raising=False)
    monkeypatch.delenv(mmseqs.GPU_ENV, raising=False)
    monkeypatch.setenv("PATH", f"{binaries['cpu'].parent}:{os.environ['PATH']}")
    monkeypatch.setenv(mmseqs.GPU_BINARY_ENV, str(binaries["cuda"]))
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "u.fasta").write_text(">a\nMKVLAAGIVG\n")
    spec = DatabaseSpec(name="u", version="v1", source="s3://b/u", role="uniref90", sequences="u.fasta",
                        files={"u.fasta": "0" * 64}, mmseqs_gpu_index=True)
    mmseqs.mmseqs_version.cache_clear()
    try:
        out = _build_indexes(spec, staging, lambda m: None)
    finally:
        mmseqs.mmseqs_version.cache_clear()
    assert out["mmseqs2"]["path"] == "mmseqs/14.7e284-fake" and out["mmseqs2_gpu"]["path"] == "mmseqs/18.8cc5c-fake-gpu"
    lines = log.read_text().splitlines()
    assert all(ln.startswith("cuda") for ln in lines if "makepaddedseqdb" in ln)
    assert any(ln.startswith("cpu createdb") for ln in lines) and any(ln.startswith("cuda createdb") for ln in lines)


def test_colabfold_search_on_fasta_built_databases_uses_the_gpu_on_a_gpu_job(tmp_path, monkeypatch):
    """db_preset colabfold on FASTA-built UniRef30 and env DB, on a GPU job: both searches (the
    queries against UniRef30, its last profile against the env DB) go through the one GPU-aware
    path (mmseqs.colabfold_fasta_search): the GPU prefilter, never ``-s``; one gpuserver per DB."""
    from foldstack.steps import mmseqs
    from foldstack.steps.databases import Database
    from foldstack.steps.presets import COLABFOLD_SEARCH
    from tests.steps.test_steps_mmseqs import FAKE_MMSEQS

    binary = tmp_path / "mmseqs"
    binary.write_text(FAKE_MMSEQS)
    binary.chmod(0o755)
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    dbs = []
    for name in ("uniref30", "envdb"):
        version_dir = tmp_path / "db" / name / "v1"
        version_dir.mkdir(parents=True)
        (version_dir / f"{name}.fasta").write_text(">a\nMKVLAAGIVG\n")
        dbs.append(Database(name=name, version="v1", path=version_dir, manifest={"sequences": f"{name}.fasta"},
                            manifest_sha256="0"))
    mmseqs.mmseqs_version.cache_clear()
    for db in dbs:
        mmseqs.build_target_index(db, str(binary), gpu=True)
    monkeypatch.setenv(mmseqs.GPU_ENV, "1")
    monkeypatch.setenv(mmseqs.INDEX_ENV, "prebuilt")
    monkeypatch.setattr(mmseqs, "_entries", lambda db, qdb: {})  # the stand-in writes no query lookup
    log.write_text("")
    try:
        out, info = mmseqs.colabfold_search_a3m([("q0", "MKVLAAGIVG")], *dbs, cpus=1, work_dir=tmp_path / "work",
                                                params=dict(COLABFOLD_SEARCH), binary=str(binary))
    finally:
        assert mmseqs.stop_gpu_servers() == 2
        mmseqs.mmseqs_version.cache_clear()
    lines = log.read_text().splitlines()
    searches = [ln for ln in lines if ln.startswith("search ")]
    assert len(searches) == 2 and "/prof_res " in searches[1]
    assert all("--gpu 1 --prefilter-mode 1 --gpu-server 1" in ln and " -s " not in ln for ln in searches)
    assert [ln.split()[0] for ln in lines if ln.split()[0] in ("mvdb", "lndb")] == ["mvdb", "lndb"]
    assert info["uniref30"]["gpu"] is True and info["envdb"]["gpu"] is True
    assert out["q0"][0].startswith(">q0\nMKVLAAGIVG")
