"""MSA cache, batching, OOM escalation, bulk fan-out and the on-demand MSA fallback, on the local engine
with the real rendered ASL, real Lambdas and real steps (demo database and weights).

Speed: the AlphaFold2 runs here use a copy of the fold workflow whose predict command
folds with ESMFold (``--engine esmfold`` instead of ``Ref::engine``): everything the
tests assert (MSA cache, Msa job, fallback queue) happens before Predict, and the real
AlphaFold2 predict is covered by the slow test in test_local_run.py.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from foldstack.core.request import RunRequest
from foldstack.local.runner import LocalRunner
from foldstack.workflows.specs import Workflow

pytestmark = pytest.mark.e2e

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ"
# a sequence no other test folds, so the (session-wide) demo home's MSA cache starts cold for it
CACHE_SEQ = "MSTNPKPQRKTKRNTNRRPQDVKFPGGGQIVGGVYLLPRRGPRLGVRATRKTSERSQPRGRRQPIPKA"


def workflow_copy(tmp_path, repo, *, knobs=None, fast_af2=False) -> Workflow:
    """The fold workflow with per-test knobs (data, as per environment)."""
    directory = tmp_path / "statemachines" / "fold"
    shutil.copytree(repo / "statemachines" / "fold", directory)
    if knobs:
        data = yaml.safe_load((directory / "knobs.yaml").read_text())
        for key, value in knobs.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) else value
        (directory / "knobs.yaml").write_text(yaml.safe_dump(data))
    if fast_af2:
        jobs = yaml.safe_load((directory / "jobs.yaml").read_text())
        cmd = jobs["jobs"]["predict"]["command"]
        cmd[cmd.index("Ref::engine")] = "esmfold"
        (directory / "jobs.yaml").write_text(yaml.safe_dump(jobs))
    return Workflow(directory=directory)


def fasta(tmp_path, name, records):
    path = tmp_path / f"{name}.fasta"
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records))
    return str(path)


def entered(run, kind="TaskStateEntered"):
    return [(e["state"], e["target"]) for e in run.history() if e["type"] == kind]


def states(run):
    return [e["state"] for e in run.history() if e["type"].endswith("StateEntered")]


class Injector:
    """Fault injection through the engine's hook: `faults[(job, queue)]` -> fault name."""

    def __init__(self, faults):
        self.faults = faults
        self.seen: list[tuple[str, str, int]] = []

    def before_batch_attempt(self, job, attempt):
        self.seen.append((job.job, job.queue, attempt))
        return self.faults.get((job.job, job.queue))

    def before_lambda(self, name, event):
        return None


# ------------------------------------------------------------------ batching + OOM


def test_batch_predicts_in_one_job_and_escalates_once_on_out_of_memory(demo_home, tmp_path, monkeypatch):
    """Three small targets -> one Predict job (model loaded once). The small class
    exits 3 (out of memory): the batch is resubmitted once to the medium class, and its
    cost is that of the medium class's queue it ran on."""
    monkeypatch.setenv("FOLDSTACK_PRICE_REGION", "us-east-1")
    records = [("t1", SEQ), ("t2", SEQ[:40]), ("t3", SEQ[5:60])]
    runner = LocalRunner(demo_home, job_env={"FOLDSTACK_FAULT_OOM": "small"})
    run = runner.submit(RunRequest(inputs=(fasta(tmp_path, "b", records),), output_uri=str(tmp_path / "out"),
                                   engine="esmfold"))
    assert run.wait(300) == "SUCCEEDED", run.record()
    tasks = [s for s, _ in entered(run)]
    assert tasks.count("Predict_small") == 1 and tasks.count("Predict_medium") == 1, tasks
    assert "Escalate_small" in states(run) and "Predict_large" not in tasks
    result = tmp_path / "out" / run.run_id
    for i, tid in enumerate(["t2", "t3", "t1"]):  # sorted by length within the batch
        metrics = json.loads((result / tid / "metrics.json").read_text())
        assert metrics["batch"] == {"size": 3, "index": i, "model_loads": 1}, metrics
    logs = "".join(p.read_text() for p in (demo_home / "runs" / run.run_id / "logs").glob("*predict*.log"))
    assert "batch of 3: 3 done, model loads: 1" in logs
    assert "injected out of memory" in logs
    manifest = json.loads((result / "manifest.json").read_text())
    for target in manifest["targets"]:  # planned small, ran (and priced) on gpu-medium
        assert target["size_class"] == "small" and target["provenance"]["predict"]["ran_on"]["size_class"] == "medium"
        predict = target["cost"]["steps"]["predict"]
        assert (predict["queue"], predict["size_class"], predict["priced_by"]) == ("gpu-medium", "medium", "ran_on")
        assert predict["instance_type"].startswith("g6e.")  # the medium class's 48 GB L40S
    assert manifest["cost"]["region"] == "us-east-1" and manifest["cost"]["estimated_total_usd"] > 0


def recorded_failures(tmp_path, run):
    """(target, step, code, message) of each failure in the run's manifest."""
    manifest = json.loads((tmp_path / "out" / run.run_id / "manifest.json").read_text())
    return [(f["target"], f["step"], f["code"], f["message"]) for f in manifest["failures"]]


def test_out_of_memory_on_the_escalated_class_fails_the_target(demo_home, tmp_path):
    """Out of memory again after the one escalation: the target is recorded as failed
    (out_of_memory); as the run's only target, beyond any budget, the run FAILS, coded."""
    runner = LocalRunner(demo_home, job_env={"FOLDSTACK_FAULT_OOM": "small,medium"})
    run = runner.submit(RunRequest(inputs=(fasta(tmp_path, "o", [("oom1", SEQ)]),),
                                   output_uri=str(tmp_path / "out"), engine="esmfold"))
    assert run.wait(300) == "FAILED"
    tasks = [s for s, _ in entered(run)]
    assert tasks.count("Predict_small") == 1 and tasks.count("Predict_medium") == 1
    assert "Predict_large" not in tasks and "CleanupOnFailure" in tasks  # escalates once, never twice
    assert run.record()["error"] == "TooManyFailuresError"
    [(target, step, code, message)] = recorded_failures(tmp_path, run)
    assert (target, step, code) == ("oom1", "predict", "out_of_memory") and "injected out of memory" in message


# ------------------------------------------------------------------ bulk fan-out


def test_bulk_input_runs_through_the_distributed_map(demo_home, tmp_path, repo):
    wf = workflow_copy(tmp_path, repo, knobs={"bulk": {"threshold_targets": 2}, "batching": {"max_targets_per_job": 2}})
    records = [(f"bulk{i}", SEQ[i:]) for i in range(3)]
    run = LocalRunner(demo_home, workflow=wf).submit(
        RunRequest(inputs=(fasta(tmp_path, "bulk", records),), output_uri=str(tmp_path / "out"), engine="esmfold"))
    assert run.wait(300) == "SUCCEEDED", run.record()
    names = states(run)
    assert "FoldBatchesBulk" in names and "FoldBatches" not in names
    assert any(e["type"] == "MapRunStarted" for e in run.history())
    manifest = json.loads((tmp_path / "out" / run.run_id / "manifest.json").read_text())
    assert sorted(t["id"] for t in manifest["targets"]) == ["bulk0", "bulk1", "bulk2"]
    # 3 targets, at most 2 per job: 2 predict jobs (one per child execution)
    logs = sorted(p.name for p in (demo_home / "runs" / run.run_id / "logs").glob("*predict*.log"))
    assert len(logs) == 2, logs


# ------------------------------------------------------------------ MSA cache + fallback


def test_msa_cache_hit_skips_the_msa_job_and_spot_exhaustion_falls_back_once(demo_home, tmp_path, repo, monkeypatch):
    monkeypatch.setenv("FOLDSTACK_PRICE_REGION", "us-east-1")
    wf = workflow_copy(tmp_path, repo, fast_af2=True)
    fa = fasta(tmp_path, "cache", [("cached1", CACHE_SEQ)])
    # first run: every Spot attempt of the MSA is reclaimed -> one on-demand resubmission
    spot = Injector({("msa", "cpu-spot"): "spot_loss"})
    first = LocalRunner(demo_home, workflow=wf, injector=spot).submit(
        RunRequest(inputs=(fa,), output_uri=str(tmp_path / "out1"), engine="alphafold2"))
    assert first.wait(300) == "SUCCEEDED", first.record()
    assert [q for j, q, _ in spot.seen if j == "msa"] == ["cpu-spot"] * 3 + ["cpu-ondemand"]
    tasks = entered(first)
    assert ("Msa", "cached1") in tasks and ("MsaOnDemand", "cached1") in tasks
    m1 = json.loads((tmp_path / "out1" / first.run_id / "manifest.json").read_text())
    assert m1["targets"][0]["provenance"]["msa"]["msa_cache"] == "miss"
    msa_cost = m1["targets"][0]["cost"]["steps"]["msa"]  # priced on the on-demand queue it fell back to
    assert (msa_cost["queue"], msa_cost["purchase"], msa_cost["priced_by"]) == ("cpu-ondemand", "on_demand", "ran_on")
    sha = m1["targets"][0]["sha256"]
    markers = list((demo_home / "cache" / "msa" / "jackhmmer-reduced_dbs").glob(f"*/{sha}/cache.json"))
    assert len(markers) == 1  # Collect Outputs filled the cache

    # second submission of the same sequence (another run): cache hit, no CPU job
    quiet = Injector({})
    second = LocalRunner(demo_home, workflow=wf, injector=quiet).submit(
        RunRequest(inputs=(fasta(tmp_path, "again", [("again1", CACHE_SEQ)]),), output_uri=str(tmp_path / "out2"),
                   engine="alphafold2"))
    assert second.wait(300) == "SUCCEEDED", second.record()
    assert second.run_id != first.run_id
    tasks = entered(second)
    assert ("LookupMsaCache", "again1") in tasks
    assert not any(s.startswith("Msa") for s, _ in tasks), tasks  # no Msa/MsaOnDemand TaskStateEntered
    assert [j for j, _, _ in quiet.seen] == ["predict"]
    hit = [e for e in second.history() if e["type"] == "TaskSucceeded"]
    assert hit  # the lookup's result is in the history
    m2 = json.loads((tmp_path / "out2" / second.run_id / "manifest.json").read_text())
    assert m2["targets"][0]["provenance"]["msa"]["msa_cache"] == "hit"
    a3m_1 = (tmp_path / "out1" / first.run_id / "cached1" / "msa" / "msa.a3m").read_bytes()
    assert (tmp_path / "out2" / second.run_id / "again1" / "msa" / "msa.a3m").read_bytes() == a3m_1


def test_an_application_error_on_spot_does_not_fall_back(demo_home, tmp_path, repo):
    wf = workflow_copy(tmp_path, repo, fast_af2=True)
    crash = Injector({("msa", "cpu-spot"): "crash"})
    run = LocalRunner(demo_home, workflow=wf, injector=crash).submit(
        RunRequest(inputs=(fasta(tmp_path, "crash", [("crash1", SEQ[::-1])]),), output_uri=str(tmp_path / "out"),
                   engine="alphafold2", reuse_msa=False))
    assert run.wait(300) == "FAILED"
    assert [q for j, q, _ in crash.seen if j == "msa"] == ["cpu-spot"]  # exit 1: one attempt, no fallback
    tasks = [s for s, _ in entered(run)]
    assert "Msa" in tasks and "MsaOnDemand" not in tasks and "Predict_small" not in tasks
    assert "MsaFailed" in states(run) and run.record()["error"] == "TooManyFailuresError"
    [(target, step, code, message)] = recorded_failures(tmp_path, run)
    assert (target, step, code) == ("crash1", "msa", "crash") and "exit 1" in message


class RecordingInjector(Injector):
    """Records each Msa attempt's Batch parameters; `lambda_faults[name]` fails that Lambda."""

    def __init__(self, lambda_faults=None):
        super().__init__({})
        self.lambda_faults = lambda_faults or {}
        self.msa_parameters: list[dict] = []

    def before_batch_attempt(self, job, attempt):
        if job.job == "msa":
            self.msa_parameters.append(dict(job.parameters))
        return super().before_batch_attempt(job, attempt)

    def before_lambda(self, name, event):
        return self.lambda_faults.get(name)


# chains no other test folds: the demo home's chain cache starts cold for them
CHAIN_X = "MSEQKLISEEDLNGSAHHHHHHGSLVPRGSMAKTLLILAVLCLATSVSA"
CHAIN_Y = "MGSSHHHHHHSSGLVPRGSHMASMTGGQQMGRGSEFELRRQACGRTRAPPPPPLRSGC"
CHAIN_Z = "MADQLTEEQIAEFKEAFSLFDKDGDGTITTKELGTVMRSLGQNPTEAELQDMINEVDA"


def test_a_complex_reuses_the_chain_msa_an_earlier_run_searched(demo_home, tmp_path, repo):
    """The per-chain cache's main case: chain X, searched for a monomer run, is not searched
    again for the complex X:Y (the complex misses the per-target cache, so its Msa job
    runs, and finds X in the chain cache the lookup pointed it to)."""
    wf = workflow_copy(tmp_path, repo, fast_af2=True)
    cache = str(demo_home / "cache")

    recorder = RecordingInjector()
    mono = LocalRunner(demo_home, workflow=wf, injector=recorder).submit(
        RunRequest(inputs=(fasta(tmp_path, "mono", [("x", CHAIN_X)]),), output_uri=str(tmp_path / "out1"),
                   engine="alphafold2"))
    assert mono.wait(300) == "SUCCEEDED", mono.record()
    assert [p["cache"] for p in recorder.msa_parameters] == [cache]
    first = json.loads((tmp_path / "out1" / mono.run_id / "x" / "msa" / "features.json").read_text())
    assert [c["cache"] for c in first["chain_cache"]["chains"]] == ["miss"]

    recorder = RecordingInjector()
    cx = LocalRunner(demo_home, workflow=wf, injector=recorder).submit(
        RunRequest(inputs=(fasta(tmp_path, "cx", [("xy", f"{CHAIN_X}:{CHAIN_Y}")]),),
                   output_uri=str(tmp_path / "out2"), engine="alphafold2", preset="multimer"))
    assert cx.wait(300) == "SUCCEEDED", cx.record()
    assert ("Msa", "xy") in entered(cx)  # a new complex: its Msa job runs ...
    published = tmp_path / "out2" / cx.run_id / "xy" / "msa"
    info = json.loads((published / "features.json").read_text())
    assert [c["cache"] for c in info["chain_cache"]["chains"]] == ["hit", "miss"]  # ... and searches Y only
    assert info["hits"]["demo_uniref"][0] == first["hits"]["demo_uniref"][0]
    manifest = json.loads((tmp_path / "out2" / cx.run_id / "manifest.json").read_text())
    prov = manifest["targets"][0]["provenance"]["msa"]
    assert (prov["msa_cache"], prov["chain_cache"]) == ("miss", ["hit", "miss"])
    # the preset and every database version it searched, pairing, and what the job used
    assert prov["db_preset"] == "reduced_dbs"
    assert set(prov["databases"]) == {"demo_uniref", "demo_small_bfd", "demo_mgnify"}
    assert prov["pairing"].startswith("off: no uniprot database")
    assert prov["resources"]["peak_rss_mib"] > 0 and prov["resources"]["cpu_seconds"] >= 0
    logs = "".join(p.read_text() for p in (demo_home / "runs" / cx.run_id / "logs").glob("*msa*.log"))
    assert logs.count("from the chain cache") == 1 and "not searched" in logs


@pytest.mark.parametrize("case", ["reuse_msa_false", "lookup_fails"])
def test_no_chain_cache_without_reuse_or_when_the_lookup_fails(case, demo_home, tmp_path, repo):
    """reuse_msa=false reaches the Msa job as an empty --cache; a failed lookup goes through
    MsaCacheUnavailable to an Msa job without a cache, and the run still succeeds."""
    wf = workflow_copy(tmp_path, repo, fast_af2=True)
    recorder = RecordingInjector({"msa_cache": RuntimeError("cache bucket unreachable")}
                                 if case == "lookup_fails" else None)
    run = LocalRunner(demo_home, workflow=wf, injector=recorder).submit(
        RunRequest(inputs=(fasta(tmp_path, "z", [("z", f"{CHAIN_X}:{CHAIN_Z}")]),), output_uri=str(tmp_path / "out"),
                   engine="alphafold2", preset="multimer", reuse_msa=case == "lookup_fails"))
    assert run.wait(300) == "SUCCEEDED", run.record()
    assert [p["cache"] for p in recorder.msa_parameters] == [""]
    assert ("MsaCacheUnavailable" in states(run)) is (case == "lookup_fails")
    info = json.loads((tmp_path / "out" / run.run_id / "z" / "msa" / "features.json").read_text())
    assert [c["cache"] for c in info["chain_cache"]["chains"]] == ["off", "off"]


@pytest.mark.parametrize("reuse", [False])
def test_reuse_msa_false_never_reads_the_cache(reuse, tmp_path, monkeypatch, local_env):
    """The lookup honours request.reuse_msa (no key recorded, so Collect never fills)."""
    from foldstack.tasks.msa_cache import lookup
    from foldstack.tasks.settings import TaskSettings

    monkeypatch.setenv("FOLDSTACK_CACHE_ROOT", str(tmp_path / "cache"))
    monkeypatch.setenv("FOLDSTACK_DB_ROOT", str(tmp_path / "db"))
    out = lookup(TaskSettings.from_env(), "r1", {"msa_tool": "jackhmmer", "reuse_msa": reuse},
                 {"id": "x", "sha256": "0" * 64})
    assert out["hit"] is False and "reuse_msa" in out["reason"]
    assert not (local_env["scratch"] / "r1").exists()


# ------------------------------------------------------------------ MSA out of memory, chain search phase


def test_msa_out_of_memory_reruns_once_on_the_bigger_cpu_class(demo_home, tmp_path, repo):
    """Exit 3 from the Msa job: EscalateMsa resubmits the same job definition once with the
    bigger CPU class's resources (jobs.yaml msa.escalation) and FOLDSTACK_CPU_CLASS."""
    wf = workflow_copy(tmp_path, repo, fast_af2=True)
    runner = LocalRunner(demo_home, workflow=wf, job_env={"FOLDSTACK_FAULT_OOM_MSA": "standard"})
    run = runner.submit(RunRequest(inputs=(fasta(tmp_path, "oom", [("msaoom1", SEQ[3:])]),),
                                   output_uri=str(tmp_path / "out"), engine="alphafold2", reuse_msa=False))
    assert run.wait(300) == "SUCCEEDED", run.record()
    tasks = [s for s, _ in entered(run)]
    assert tasks.count("Msa") == 1 and tasks.count("MsaLarge") == 1 and "MsaOnDemand" not in tasks, tasks
    assert "EscalateMsa" in states(run)
    info = json.loads((tmp_path / "out" / run.run_id / "msaoom1" / "msa" / "features.json").read_text())
    assert info["cpu_class"] == "escalated"  # the rerun's containerOverrides reached the job


def test_msa_out_of_memory_on_the_bigger_class_fails_the_run(demo_home, tmp_path, repo):
    wf = workflow_copy(tmp_path, repo, fast_af2=True)
    runner = LocalRunner(demo_home, workflow=wf, job_env={"FOLDSTACK_FAULT_OOM_MSA": "standard,escalated"})
    run = runner.submit(RunRequest(inputs=(fasta(tmp_path, "oom2", [("msaoom2", SEQ[4:])]),),
                                   output_uri=str(tmp_path / "out"), engine="alphafold2", reuse_msa=False))
    assert run.wait(300) == "FAILED"
    tasks = [s for s, _ in entered(run)]
    assert tasks.count("Msa") == 1 and tasks.count("MsaLarge") == 1  # escalates once, never twice
    assert "MsaFailed" in states(run) and run.record()["error"] == "TooManyFailuresError"
    [(target, step, code, message)] = recorded_failures(tmp_path, run)
    assert (target, step, code) == ("msaoom2", "msa", "out_of_memory") and "exit 3" in message


CHAIN_P = "MADEEKLPPGWEKRMSRSSGRVYYFNHITNASQWERPSGNSSSGGKNGQGEPARVRCSHLLVKHSQSRRPSSWRQEKITRTKEEALELING"
CHAIN_Q = "MSKGEELFTGVVPILVELDGDVNGHKFSVSGEGEGDATYGKLTLKFICTTGKLPVPWPTLVTTFSYGVQCFSRYPDHMKQHDFFKSAMPEG"


def test_chain_search_phase_searches_each_distinct_chain_once(demo_home, tmp_path, repo):
    """Three complexes sharing chains (P:Q, Q:P, P:P): SearchChains runs the chain jobs first (one per
    target, under the msa job definition with the msa-chains command); every Msa job then
    finds its chains stored and only featurises."""
    wf = workflow_copy(tmp_path, repo, fast_af2=True)
    recorder = RecordingInjector()
    records = [("pq", f"{CHAIN_P}:{CHAIN_Q}"), ("qp", f"{CHAIN_Q}:{CHAIN_P}"), ("pp", f"{CHAIN_P}:{CHAIN_P}")]
    run = LocalRunner(demo_home, workflow=wf, injector=recorder).submit(
        RunRequest(inputs=(fasta(tmp_path, "chains", records),), output_uri=str(tmp_path / "out"),
                   engine="alphafold2", preset="multimer", reuse_msa=False))
    assert run.wait(600) == "SUCCEEDED", run.record()
    names = states(run)
    assert names.index("SearchChains") < names.index("FoldBatches")
    assert "ChainShardsPerTarget" in names and not any(n.startswith("ChainShardNotDone") for n in names)
    assert sorted(n for n in names if n.startswith("MsaChains_")) == ["MsaChains_0", "MsaChains_1", "MsaChains_2"]
    logs = demo_home / "runs" / run.run_id / "logs"
    chain_logs = "".join(p.read_text() for p in logs.glob("*msa-chains*.log"))
    assert chain_logs.count("done in") == 3  # three shards (one per target)
    searched = [int(m) for m in re.findall(r"searching (\d+) \(jackhmmer\)", chain_logs)]
    assert sum(searched) == 2  # P and Q: each distinct chain once
    for tid in ("pq", "qp", "pp"):
        info = json.loads((tmp_path / "out" / run.run_id / tid / "msa" / "features.json").read_text())
        assert {c["cache"] for c in info["chain_cache"]["chains"]} == {"run"}, (tid, info["chain_cache"])
    msa_logs = "".join(p.read_text() for p in logs.glob("*-msa-*.log") if "chains" not in p.name)
    assert "from this run's chain search phase; not searched" in msa_logs
    for tid in ("pq", "qp", "pp"):  # no search timed in any per-target job
        timings = json.loads((tmp_path / "out" / run.run_id / tid / "msa" / "features.json").read_text())["timings"]
        assert not any(k.startswith("jackhmmer") for k in timings), (tid, timings)


def test_a_single_target_skips_the_chain_search_phase(demo_home, tmp_path, repo):
    wf = workflow_copy(tmp_path, repo, fast_af2=True)
    run = LocalRunner(demo_home, workflow=wf).submit(
        RunRequest(inputs=(fasta(tmp_path, "one", [("one1", SEQ[6:])]),), output_uri=str(tmp_path / "out"),
                   engine="alphafold2", reuse_msa=False))
    assert run.wait(300) == "SUCCEEDED", run.record()
    assert "SearchChains" not in states(run) and "ChooseChainSearch" in states(run)
