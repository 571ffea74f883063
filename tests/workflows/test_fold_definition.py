"""The rendered fold workflow: no drift, statelint-clean, and our own invariants."""

from __future__ import annotations

import json

import pytest
from statelint.linter import Linter

from foldstack.workflows.render import dumps, placeholders, render_all, render_definition, rendered_path, workflows

CLEANUP_STATES = {"CleanupOnFailure", "CleanupAfterSuccess", "CleanupAfterPartial"}


def all_states(definition, scope="", inside_map=False):
    """(name, state, inside_map, scope_states) for every state, recursing into Maps."""
    for name, state in definition["States"].items():
        yield name, state, inside_map, definition["States"]
        inner = state.get("ItemProcessor") or state.get("Iterator")
        if inner:
            yield from all_states(inner, f"{scope}{name}/", True)


@pytest.fixture(scope="module", params=[wf.name for wf in workflows()])
def definition(request):
    wf = next(w for w in workflows() if w.name == request.param)
    return render_definition(wf)


def test_rendered_files_match_templates():
    drifted = render_all(check=True)
    assert drifted == [], f"run `make render` and commit: {drifted}"


# statelint predates ItemReader.ReaderConfig.InputType, which AWS requires for a JSON object
# read by a Distributed Map (InputType JSON); that one message is a linter gap, not ours.
STATELINT_GAPS = ("Field \"InputType\" not allowed in State Machine.States.FoldBatchesBulk.ItemReader.ReaderConfig",)


def test_statelint_clean(definition):
    assert [p for p in Linter.validate(definition) if p not in STATELINT_GAPS] == []


def test_every_next_exists_and_every_state_reachable(definition):
    def walk(scope):
        names = set(scope["States"])
        reachable, todo = set(), [scope["StartAt"]]
        while todo:
            n = todo.pop()
            if n in reachable:
                continue
            assert n in names, f"transition to missing state {n}"
            reachable.add(n)
            st = scope["States"][n]
            targets = [st.get("Next"), st.get("Default")]
            targets += [c["Next"] for c in st.get("Choices", [])] + [c["Next"] for c in st.get("Catch", [])]
            todo += [t for t in targets if t]
            inner = st.get("ItemProcessor") or st.get("Iterator")
            if inner:
                walk(inner)
        assert reachable == names, f"unreachable states: {names - reachable}"

    walk(definition)


def test_every_top_level_task_and_map_catches_to_cleanup(definition):
    for name, state, inside_map, _ in all_states(definition):
        if inside_map or state["Type"] not in ("Task", "Map", "Parallel") or name in CLEANUP_STATES:
            continue
        catch_all = [c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
        assert catch_all, f"{name} has no States.ALL catch"
        for c in state["Catch"]:
            assert c["ResultPath"] == "$.error", name
            assert _ends_in_cleanup_or_a_retry(definition["States"], c["Next"]), name


def _ends_in_cleanup_or_a_retry(states: dict, hop: str) -> bool:
    """A catch goes straight to cleanup, or through Pass states that only reshape $.error
    or parse it into $.failure; a Choice there (out-of-memory escalation) sends its
    Default down the same kind of path and each match to the stage on a bigger class
    (a Batch Task, itself checked by the caller)."""
    while states[hop]["Type"] == "Pass":
        assert states[hop].get("ResultPath") in ("$.error", "$.failure"), hop
        hop = states[hop]["Next"]
    if states[hop]["Type"] == "Choice":
        for choice in states[hop]["Choices"]:
            retry = choice["Next"]
            while states[retry]["Type"] == "Pass":
                assert states[retry].get("ResultPath") != "$.error", retry
                retry = states[retry]["Next"]
            assert "batch:submitJob" in states[retry].get("Resource", ""), retry
        return _ends_in_cleanup_or_a_retry(states, states[hop]["Default"])
    return hop == "CleanupOnFailure"


def test_failures_end_in_fail_after_cleanup(definition):
    states = definition["States"]
    assert states["CleanupOnFailure"]["Next"] == "RunFailed"
    assert all(c["Next"] == "RunFailed" for c in states["CleanupOnFailure"]["Catch"])
    assert states["RunFailed"]["Type"] == "Fail"


def test_batch_tasks_have_timeouts_selectors_and_only_throttle_retries(definition):
    batch = [(n, s) for n, s, _, _ in all_states(definition) if "batch:submitJob" in s.get("Resource", "")]
    assert batch
    for name, state in batch:
        assert state["Resource"].endswith(".sync"), name
        assert state["TimeoutSeconds"] > 0 and "ResultSelector" in state, name
        for rule in state.get("Retry", []):
            assert set(rule["ErrorEquals"]) <= {"Batch.AWSBatchException", "Batch.TooManyRequestsException"}, name


def test_lambda_retries_are_transient_only_with_jitter(definition):
    for name, state, _, _ in all_states(definition):
        if "lambda:invoke" not in state.get("Resource", ""):
            continue
        for rule in state["Retry"]:
            assert "States.ALL" not in rule["ErrorEquals"] and "States.TaskFailed" not in rule["ErrorEquals"]
            assert rule["JitterStrategy"] == "FULL", name


def test_every_map_is_bounded(definition):
    maps = [s for _, s, _, _ in all_states(definition) if s["Type"] == "Map"]
    assert maps and all(0 < m["MaxConcurrency"] <= 1000 for m in maps)


def test_no_account_ids_regions_or_jsonata(definition):
    text = dumps(definition)
    assert "QueryLanguage" not in text and "{%" not in text
    import re

    assert not re.search(r"\b\d{12}\b", text), "account id baked into the template"
    assert not re.search(r"(us|eu|ap|sa|ca|me|af)-[a-z]+-\d", text), "region baked into the template"


def test_every_queue_and_job_definition_has_a_placeholder(fold_workflow):
    text = rendered_path(fold_workflow).read_text()
    names = placeholders(text)
    jobs = fold_workflow.jobs
    queues = {j.queue for j in jobs.jobs.values() if j.queue}
    queues |= set(jobs.jobs["predict"].queue_by_size_class.values())
    for queue in queues:
        assert f"queue_{queue.replace('-', '_')}_arn" in names
    for size in jobs.size_classes:
        assert f"job_definition_predict_{size}_arn" in names
    assert {"partition", "scratch_mount", "db_mount", "weights_dir", "lambda_validate_input_arn"} <= names


def test_size_class_routes_cover_jobs_yaml(fold_workflow):
    definition = render_definition(fold_workflow)
    for map_name, prefix in (("FoldBatches", ""), ("FoldBatchesBulk", "Bulk")):
        processor = definition["States"][map_name]["ItemProcessor"]["States"]
        routed = {c["StringEquals"] for c in processor[f"{prefix}RouteBySizeClass"]["Choices"]}
        assert routed == set(fold_workflow.jobs.size_classes)


def test_jobs_yaml_rejects_retry_rules_without_final_exit(fold_workflow):
    from foldstack.workflows.specs import JobsFile

    raw = json.loads(fold_workflow.jobs.model_dump_json())
    raw["jobs"]["msa"]["retry"]["evaluate_on_exit"] = [{"on_status_reason": "Host EC2*", "action": "RETRY"}]
    with pytest.raises(ValueError, match="must end with"):
        JobsFile.model_validate(raw)


@pytest.mark.slow
def test_moto_parser_accepts_the_definition_with_local_values(fold_workflow):
    from foldstack.local import local_values, substitute
    from foldstack.local.moto_adapter import parse_definition

    text = rendered_path(fold_workflow).read_text()
    lambdas = [p.parent.name for p in (fold_workflow.directory.parents[1] / "lambdas").glob("*/handler.py")]
    values = local_values(fold_workflow.directory / "jobs.yaml", lambdas=lambdas, scratch_mount="/s", db_mount="/d",
                          weights_dir="/w")
    parse_definition(substitute(text, values))


def test_msa_escalates_once_to_the_bigger_cpu_class_of_jobs_yaml(fold_workflow):
    """Exit 3 from an Msa job: the same job definition once more, resourceRequirements
    overridden with jobs.yaml msa.escalation (and FOLDSTACK_CPU_CLASS), on Spot or, after
    Spot ran out, on the fallback queue; each at most once."""
    definition = render_definition(fold_workflow)
    msa = fold_workflow.jobs.jobs["msa"]
    for map_name, p in (("FoldBatches", ""), ("FoldBatchesBulk", "Bulk")):
        batch = definition["States"][map_name]["ItemProcessor"]["States"]
        states = batch[f"{p}AlignTargets"]["ItemProcessor"]["States"]
        for name, queue, large in (("Msa", msa.queue, False), ("MsaOnDemand", msa.fallback_queue, False),
                                   ("MsaLarge", msa.queue, True), ("MsaLargeOnDemand", msa.fallback_queue, True)):
            params = states[p + name]["Parameters"]
            assert params["JobDefinition"] == "${job_definition_msa_arn}"
            assert params["JobQueue"] == f"${{queue_{queue.replace('-', '_')}_arn}}"
            assert states[p + name]["Catch"][0]["Next"] == f"{p}MsaFailure"
            names_its_job_definition = {"Name": "FOLDSTACK_JOB_DEFINITION", "Value": "${job_definition_msa_arn}"}
            if large:
                assert params["ContainerOverrides"] == {
                    "ResourceRequirements": [{"Type": "VCPU", "Value": str(msa.escalation.vcpu)},
                                             {"Type": "MEMORY", "Value": str(msa.escalation.memory_mib)}],
                    "Environment": [names_its_job_definition, {"Name": "FOLDSTACK_CPU_CLASS", "Value": "escalated"}]}
            else:
                assert params["ContainerOverrides"] == {"Environment": [names_its_job_definition]}
        kind = states[f"{p}MsaFailureKind"]["Choices"]
        oom = next(c for c in kind if c["Next"] == f"{p}EscalateMsa")["And"]
        assert {"Variable": "$.msa_escalated", "IsPresent": False} in oom
        assert oom_signals(oom) == {("ExitCode", 3), ("ExitCode", 137), ("Reason", "*OutOfMemoryError*"),
                                    ("StatusReason", "*OutOfMemoryError*")}
        spot = next(c for c in kind if c["Next"] == f"{p}MsaSpotExhausted")["And"]
        assert {"Variable": "$.msa_fallback", "IsPresent": False} in spot
    assert msa.escalation.memory_mib > msa.resources.memory_mib


def test_chain_search_phase_runs_before_the_batches_and_is_bounded(fold_workflow):
    """A Parallel of knobs.chain_search.max_jobs branches (run-level jobs, no Map iterations
    to mistake for targets); branch i submits its shard when i < $.chain_plan.n."""
    definition = render_definition(fold_workflow)
    states, knobs = definition["States"], fold_workflow.knobs
    max_jobs = knobs["chain_search"]["max_jobs"]
    assert states["PlanBatches"]["Next"] == "ChooseChainSearch"
    search = states["SearchChains"]
    assert search["Type"] == "Parallel" and search["Next"] == "ChooseFanOut"
    assert len(search["Branches"]) == max_jobs
    for i, branch in enumerate(search["Branches"]):
        gate = branch["States"][f"ChainShard{i}"]
        assert gate["Choices"] == [{"Variable": "$.chain_plan.n", "NumericGreaterThan": i, "Next": f"MsaChains_{i}"}]
        job = branch["States"][f"MsaChains_{i}"]
        assert job["Parameters"]["JobDefinition"] == "${job_definition_msa_arn}"  # the msa job's role and image
        command = job["Parameters"]["ContainerOverrides"]["Command.$"]
        assert command.startswith("States.Array('foldstack', 'step', 'msa-chains'")
        assert f"'--shard', '{i}', '--shards', $.chain_plan.count" in command and "$.staged.msa_cache_root" in command
        assert job["Catch"][0]["Next"] == f"ChainShardNotDone{i}"  # a failed shard is not fatal
    assert states["ChainShardsMax"]["Parameters"] == {"n": max_jobs, "count": str(max_jobs)}
    choices = states["ChooseChainSearch"]["Choices"]
    assert {"Variable": "$.validated.n_targets", "NumericLessThan": 2, "Next": "ChooseFanOut"} in choices
    assert states["StageInputs"]["ResultSelector"]["msa_cache_root.$"] == "$.Payload.msa_cache_root"


def oom_signals(rule) -> set:
    """The (field, value) comparisons of a Choice rule's out-of-memory test on the job."""
    found = set()
    if isinstance(rule, list):
        for r in rule:
            found |= oom_signals(r)
    elif isinstance(rule, dict):
        for key in ("And", "Or"):
            if key in rule:
                found |= oom_signals(rule[key])
        field = str(rule.get("Variable", "")).rsplit(".", 1)[-1]
        for op in ("NumericEquals", "StringMatches"):
            if op in rule and rule["Variable"].startswith("$.failure.job."):
                found.add((field, rule[op]))
    return found


def test_predict_escalates_on_every_out_of_memory_signal_and_never_fails_the_batch(fold_workflow):
    """Predict escalates one class up on exit 3, exit 137 or Batch's OutOfMemoryError, once;
    any failure (after escalation, or on the largest class) ends in PredictFailed, a Pass to
    Publish Batch, never a Fail state: the batch's other targets are published."""
    definition = render_definition(fold_workflow)
    classes = list(fold_workflow.jobs.size_classes)
    for map_name, p in (("FoldBatches", ""), ("FoldBatchesBulk", "Bulk")):
        batch = definition["States"][map_name]["ItemProcessor"]["States"]
        assert not [n for n, st in batch.items() if st["Type"] == "Fail" and n != f"{p}UnknownSizeClass"]
        for name in classes[:-1]:
            rule = batch[f"{p}PredictOutOfMemory_{name}"]["Choices"][0]["And"]
            assert {"Variable": "$.escalated", "IsPresent": False} in rule
            assert oom_signals(rule) == {("ExitCode", 3), ("ExitCode", 137), ("Reason", "*OutOfMemoryError*"),
                                         ("StatusReason", "*OutOfMemoryError*")}
        top = batch[f"{p}Predict_{classes[-1]}"]
        assert [c["Next"] for c in top["Catch"]] == [f"{p}PredictFailed"]
        assert batch[f"{p}PredictFailed"]["Type"] == "Pass" and batch[f"{p}PredictFailed"]["Next"] == f"{p}PublishBatch"
        assert batch[f"{p}PublishBatch"]["Catch"][0]["Next"] == f"{p}BatchDone"
        msa = batch[f"{p}AlignTargets"]["ItemProcessor"]["States"]
        assert msa[f"{p}MsaFailed"]["Type"] == "Pass" and msa[f"{p}MsaFailed"]["End"] is True



@pytest.mark.parametrize(("job", "oom"), [
    ({"Container": {"ExitCode": 3}, "StatusReason": "Essential container in task exited"}, True),
    ({"Container": {"ExitCode": 137, "Reason": "OutOfMemoryError: Container killed due to memory usage"},
      "StatusReason": "Essential container in task exited"}, True),
    ({"Container": {"ExitCode": 137}}, True),  # killed, no reason given
    ({"Container": {"Reason": "OutOfMemoryError: Container killed due to memory usage"}}, True),  # no exit code
    ({"Container": {}, "StatusReason": "OutOfMemoryError: Container killed due to memory usage"}, True),
    ({"Container": {"ExitCode": 1}, "StatusReason": "Essential container in task exited"}, False),
    ({"Container": {"ExitCode": 2}}, False),
    ({"StatusReason": "Host EC2 (instance i-0abc) terminated."}, False),  # no Container, no exit code
])
def test_out_of_memory_rule_on_step_functions_semantics(fold_workflow, tmp_path, job, oom):
    """The rendered Predict out-of-memory Choice, run by the local engine's Step Functions
    (moto): every signal of out of memory escalates, whichever fields the job description
    has (a Choice on an absent field would be a runtime error), and nothing else does."""
    from foldstack.local import LocalEngine

    batch = render_definition(fold_workflow)["States"]["FoldBatches"]["ItemProcessor"]["States"]
    rule = batch["PredictOutOfMemory_small"]["Choices"][0]
    mini = {"StartAt": "Decide", "States": {
        "Decide": {"Type": "Choice", "Choices": [{**rule, "Next": "Escalate"}], "Default": "Other"},
        "Escalate": {"Type": "Pass", "Result": "escalate", "End": True},
        "Other": {"Type": "Pass", "Result": "other", "End": True}}}
    execution = LocalEngine(json.dumps(mini), log_dir=tmp_path / "logs").start_execution(
        "oom-rule", {"failure": {"job": job}})
    assert execution.wait(30) == "SUCCEEDED"
    assert execution.output == ("escalate" if oom else "other")


def test_every_batch_job_is_told_its_job_definition(definition):
    """Provenance: each Batch task passes its own JobDefinition (ARN with revision, filled
    by Terraform) to the job as FOLDSTACK_JOB_DEFINITION; a job cannot name its own."""
    from tests.asl_nodes import dict_nodes

    tasks = [n for n in dict_nodes(definition) if str(n.get("Resource", "")).endswith("submitJob.sync")]
    assert tasks
    for task in tasks:
        env = task["Parameters"]["ContainerOverrides"]["Environment"]
        assert {"Name": "FOLDSTACK_JOB_DEFINITION", "Value": task["Parameters"]["JobDefinition"]} in env
