"""Every Lambda Task state of every workflow against its task's contract models.

For each state that invokes ``lambdas/<name>/`` (``arn:${partition}:states:::lambda:invoke``
with ``FunctionName`` ``${lambda_<name>_arn}``): the ``Payload`` keys (``.$`` stripped)
are exactly fields of the task's event model with every required one present (and its
static values valid), and every ``$.Payload...`` path in the ``ResultSelector`` names
fields of the result model (``foldstack.tasks.events``). Checked on the freshly rendered
templates and on the committed ``statemachines/rendered/*.asl.json``; the negative cases
below show the checker catches a renamed or dropped key on either side.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from foldstack.tasks.events import CONTRACTS, TargetsEvent
from foldstack.workflows.registry import get_workload, load_registry
from foldstack.workflows.render import render_definition, rendered_path, workflows

REPO = Path(__file__).resolve().parents[2]
LAMBDAS_DIR = REPO / "lambdas"
INVOKE = re.compile(r"^arn:[^:]+:states:::lambda:invoke$")
FUNCTION = re.compile(r"^\$\{lambda_([a-z0-9_]+)_arn\}$")
FUNCTION_ANYWHERE = re.compile(r"\$\{lambda_([a-z0-9_]+)_arn\}")
PAYLOAD_PATH = re.compile(r"\$\.Payload((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)")
# Other fields of a lambda:invoke response (the task's result is under Payload).
INVOKE_RESPONSE = {"StatusCode", "ExecutedVersion", "SdkHttpMetadata", "SdkResponseMetadata"}


# -- the checker -------------------------------------------------------------------------


def lambda_states(definition: dict[str, Any], scope: str = ""):
    """(path, state) of every Task state that invokes a Lambda, through Maps and Parallels."""
    for name, state in definition["States"].items():
        path = f"{scope}{name}"
        if state.get("Type") == "Task" and (
            ":lambda:" in str(state.get("Resource")) or FUNCTION_ANYWHERE.search(json.dumps(state.get("Parameters")))
        ):
            yield path, state
        inner = state.get("ItemProcessor") or state.get("Iterator")
        if inner:
            yield from lambda_states(inner, f"{path}/")
        for i, branch in enumerate(state.get("Branches", [])):
            yield from lambda_states(branch, f"{path}[{i}]/")


def _unwrap(tp: Any) -> Any:
    """X from X | None, Annotated[X, ...]."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def result_path_problems(model: type[BaseModel], path: str) -> list[str]:
    """What in ``$.Payload<path>`` is not in `model` (empty: every named field exists)."""
    current: Any = model
    walked = "$.Payload"
    for part in re.findall(r"\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\]", path):
        current = _unwrap(current)
        if part.startswith("["):
            if typing.get_origin(current) not in (list, tuple):
                return [f"{walked}{part}: {walked} is no list in {model.__name__}"]
            current = typing.get_args(current)[0]
        elif _is_model(current):
            field = part[1:]
            if field not in current.model_fields:
                return [f"{walked}{part}: {current.__name__} has no field {field!r}"]
            current = current.model_fields[field].annotation
        else:
            return []  # a free-form value (dict, Any): nothing more to check
        walked += part
    return []


def _selector_paths(value: Any, key: str = "") -> list[str]:
    """Every JSONPath string a ResultSelector (or part of it) reads."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _selector_paths(v, k)]
    if isinstance(value, list):
        return [p for v in value for p in _selector_paths(v, key)]
    if isinstance(value, str) and key.endswith(".$"):
        return [value]
    return []


def contract_problems(path: str, state: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(task name, problems) of one Lambda Task state."""
    problems: list[str] = []
    if not INVOKE.fullmatch(str(state.get("Resource"))):
        return None, [f"{path}: Resource {state.get('Resource')!r} is not lambda:invoke; the contract check "
                      "knows only that form"]
    params = state.get("Parameters") or {}
    match = FUNCTION.fullmatch(str(params.get("FunctionName")))
    if not match:
        return None, [f"{path}: FunctionName {params.get('FunctionName')!r} is not ${{lambda_<name>_arn}}"]
    name = match.group(1)
    payload = params.get("Payload")
    # another workflow's task: the shared Lambda dispatches on the static "workflow" key
    # (foldstack.workflows.dispatch) to that workload's task module and its CONTRACTS
    workflow = payload.get("workflow") if isinstance(payload, dict) else None
    contracts, where = CONTRACTS, "foldstack.tasks.events.CONTRACTS"
    if workflow not in (None, "fold"):
        module = get_workload(workflow).tasks_module()
        contracts, where = module.CONTRACTS, f"{module.__name__}.CONTRACTS"
        if name not in module.HANDLERS:
            problems.append(f"{path}: {module.__name__}.HANDLERS has no {name!r}")
    label = name if workflow in (None, "fold") else f"{workflow}:{name}"
    if name not in contracts:
        return label, [f"{path}: no contract for Lambda {name!r} in {where}"]
    if not (LAMBDAS_DIR / name / "handler.py").is_file():
        problems.append(f"{path}: no lambdas/{name}/handler.py")
    event, result = contracts[name].event, contracts[name].result

    if not isinstance(payload, dict):
        problems.append(f"{path}: Payload must be an object naming each field (got {payload!r}"
                        f"{'; Payload.$ passes a whole document' if 'Payload.$' in params else ''})")
    else:
        keys = {k.removesuffix(".$") for k in payload}
        fields = event.model_fields
        unknown = sorted(keys - set(fields))
        missing = sorted(f for f, info in fields.items() if info.is_required() and f not in keys)
        if unknown:
            problems.append(f"{path}: Payload keys {unknown} are not fields of {event.__name__}")
        if missing:
            problems.append(f"{path}: Payload lacks required fields {missing} of {event.__name__}")
        if issubclass(event, TargetsEvent) and not keys & {"targets", "targets_digest"}:
            problems.append(f"{path}: Payload passes neither targets nor targets_digest")
        static = {k: v for k, v in payload.items() if not k.endswith(".$") and k in fields}
        try:
            event.model_validate(static)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                if err["loc"] and err["loc"][0] in static and err["type"] != "missing":
                    problems.append(f"{path}: Payload value {'.'.join(map(str, err['loc']))}={err['input']!r}: "
                                    f"{err['msg']}")

    for jsonpath in _selector_paths(state.get("ResultSelector") or {}):
        found = list(PAYLOAD_PATH.finditer(jsonpath))
        for m in found:
            problems += [f"{path}: ResultSelector {p}" for p in result_path_problems(result, m.group(1))]
        if not found and jsonpath.startswith("$."):
            head = re.split(r"[.\[]", jsonpath[2:], maxsplit=1)[0]
            if head not in INVOKE_RESPONSE:
                problems.append(f"{path}: ResultSelector reads {jsonpath}, which a lambda:invoke response lacks "
                                "(the task's result is under $.Payload)")
    return label, problems


def check_definition(definition: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """({state path: task name}, problems) over a whole definition."""
    checked, problems = {}, []
    for path, state in lambda_states(definition):
        name, found = contract_problems(path, state)
        checked[path] = name
        problems += found
    return checked, problems


# -- every workflow ----------------------------------------------------------------------

WORKFLOWS = {wf.name: wf for wf in workflows()}


def _definitions():
    for name, wf in WORKFLOWS.items():
        yield pytest.param(name, "template", id=f"{name}-template")
        yield pytest.param(name, "committed", id=f"{name}-committed")


def load(name: str, source: str) -> tuple[dict[str, Any], str]:
    wf = WORKFLOWS[name]
    if source == "template":
        definition = render_definition(wf)
        return definition, json.dumps(definition)
    text = rendered_path(wf).read_text()
    return json.loads(text), text


def test_every_workflow_is_covered():
    assert WORKFLOWS, "no workflows found under statemachines/"
    committed = {p.name.removesuffix(".asl.json") for p in (REPO / "statemachines" / "rendered").glob("*.asl.json")}
    assert committed == set(WORKFLOWS), "a rendered definition without a template, or the reverse"


@pytest.mark.parametrize(("workflow", "source"), list(_definitions()))
def test_lambda_states_match_the_task_contracts(workflow, source):
    definition, text = load(workflow, source)
    checked, problems = check_definition(definition)
    assert problems == []
    # the walker found every Lambda the definition names (Maps, Parallels, nested)
    assert len(checked) == len(FUNCTION_ANYWHERE.findall(text)), checked
    if ":lambda:" in text or "${lambda_" in text:
        assert len(checked) > 0
    print(f"\n{workflow} ({source}): {len(checked)} Lambda states checked: "
          + ", ".join(f"{p}={n}" for p, n in sorted(checked.items())))


def test_every_task_contract_is_used_by_some_workflow():
    used = set()
    for name in WORKFLOWS:
        used |= set(check_definition(load(name, "committed")[0])[0].values())
    assert set(CONTRACTS) == {n for n in used if ":" not in n}
    # each workload with its own task module: every contract it declares is used by its workflow
    for name, workload in load_registry().items():
        module = workload.tasks_module()
        if module is not None:
            assert {f"{name}:{task}" for task in module.CONTRACTS} == {n for n in used if n.startswith(name + ":")}
            assert set(module.HANDLERS) == set(module.CONTRACTS)


def _load_handler(name: str):
    spec = importlib.util.spec_from_file_location(f"contract_{name}", LAMBDAS_DIR / name / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


@pytest.mark.parametrize("name", sorted(p.parent.name for p in LAMBDAS_DIR.glob("*/handler.py")))
def test_every_handler_declares_its_contract(name):
    handler = _load_handler(name)
    assert handler.contract is CONTRACTS[name]
    hints = typing.get_type_hints(handler.__wrapped__)
    assert hints["event"] is CONTRACTS[name].event and hints["return"] is CONTRACTS[name].result


def test_every_model_forbids_unknown_keys():
    workloads = [w.tasks_module() for w in load_registry().values()]
    for contract in [*CONTRACTS.values(), *(c for m in workloads if m is not None for c in m.CONTRACTS.values())]:
        for model in (contract.event, contract.result):
            assert model.model_config.get("extra") == "forbid", model.__name__


def test_lambda_zips_carry_the_contracts():
    spec = importlib.util.spec_from_file_location("build_lambdas", REPO / "scripts" / "build_lambdas.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    names = {arc for arc, _ in builder.package_entries()}
    assert {"foldstack/tasks/events.py", "foldstack/tasks/runtime.py", "foldstack/core/targets.py"} <= names


# -- the checker catches drift -------------------------------------------------------------


@pytest.fixture
def fold():
    return load("fold", "committed")[0]


def state_named(definition: dict[str, Any], name: str) -> dict[str, Any]:
    for path, state in lambda_states(definition):
        if path.rsplit("/", 1)[-1] == name:
            return state
    raise KeyError(name)


def problems_of(definition):
    return check_definition(definition)[1]


def test_the_unmutated_definition_is_clean(fold):
    assert problems_of(copy.deepcopy(fold)) == []


def test_a_renamed_payload_key_is_caught(fold):
    bad = copy.deepcopy(fold)
    payload = state_named(bad, "StageInputs")["Parameters"]["Payload"]
    payload["runid.$"] = payload.pop("run_id.$")
    problems = problems_of(bad)
    assert any("StageInputs" in p and "['runid']" in p and "StageInputsEvent" in p for p in problems), problems
    assert any("StageInputs" in p and "lacks required fields ['run_id']" in p for p in problems), problems


def test_a_renamed_key_deep_in_a_map_is_caught(fold):
    bad = copy.deepcopy(fold)
    payload = state_named(bad, "BulkLookupMsaCache")["Parameters"]["Payload"]
    payload["item.$"] = payload.pop("target.$")
    problems = problems_of(bad)
    assert any(p.startswith("FoldBatchesBulk/BulkAlignTargets/BulkLookupMsaCache:") and "['item']" in p
               for p in problems), problems


def test_a_dropped_required_key_is_caught(fold):
    bad = copy.deepcopy(fold)
    del state_named(bad, "CollectOutputs")["Parameters"]["Payload"]["request.$"]
    assert any("CollectOutputs" in p and "['request']" in p for p in problems_of(bad))


def test_dropping_both_targets_and_digest_is_caught(fold):
    bad = copy.deepcopy(fold)
    payload = state_named(bad, "PlanBatches")["Parameters"]["Payload"]
    del payload["targets.$"], payload["targets_digest.$"]
    assert any("PlanBatches" in p and "neither targets nor targets_digest" in p for p in problems_of(bad))


def test_a_bad_static_value_is_caught(fold):
    bad = copy.deepcopy(fold)
    state_named(bad, "PlanBatches")["Parameters"]["Payload"]["max_targets_per_job"] = "8"
    assert any("PlanBatches" in p and "max_targets_per_job='8'" in p for p in problems_of(bad))


def test_a_renamed_result_field_is_caught(fold):
    bad = copy.deepcopy(fold)
    selector = state_named(bad, "StageInputs")["ResultSelector"]
    selector["staged.$"] = "$.Payload.n_staged"
    problems = problems_of(bad)
    assert any("StageInputs" in p and "has no field 'n_staged'" in p and "StageInputsResult" in p
               for p in problems), problems


def test_a_renamed_nested_result_field_is_caught(fold):
    bad = copy.deepcopy(fold)
    selector = state_named(bad, "PlanBatches")["ResultSelector"]
    selector["bucket.$"] = "$.Payload.manifest.bukket"
    selector["first.$"] = "$.Payload.batches[0].targets[0].sha256"  # fine: a real field, through lists
    problems = problems_of(bad)
    assert problems and all("BatchManifest has no field 'bukket'" in p for p in problems), problems


def test_a_result_read_outside_the_payload_is_caught(fold):
    bad = copy.deepcopy(fold)
    state_named(bad, "ValidateInput")["ResultSelector"]["n_targets.$"] = "$.n_targets"
    assert any("ValidateInput" in p and "$.n_targets" in p for p in problems_of(bad))


def test_an_unknown_function_and_a_whole_state_payload_are_caught(fold):
    bad = copy.deepcopy(fold)
    state_named(bad, "CleanupAfterSuccess")["Parameters"]["FunctionName"] = "${lambda_tidy_up_arn}"
    params = state_named(bad, "CleanupOnFailure")["Parameters"]
    params["Payload.$"] = "$"
    del params["Payload"]
    problems = problems_of(bad)
    assert any("CleanupAfterSuccess" in p and "'tidy_up'" in p for p in problems), problems
    assert any("CleanupOnFailure" in p and "Payload.$ passes a whole document" in p for p in problems), problems


def test_a_lambda_in_a_parallel_branch_is_checked(fold):
    bad = copy.deepcopy(fold)
    inner = copy.deepcopy(state_named(bad, "StageInputs"))
    inner.pop("Catch", None)
    inner.pop("Next", None)
    inner["End"] = True
    inner["Parameters"]["Payload"]["extra.$"] = "$.extra"
    bad["States"]["Fanout"] = {"Type": "Parallel", "End": True,
                               "Branches": [{"StartAt": "Inner", "States": {"Inner": inner}}]}
    checked, problems = check_definition(bad)
    assert checked["Fanout[0]/Inner"] == "stage_inputs"
    assert any(p.startswith("Fanout[0]/Inner:") and "['extra']" in p for p in problems), problems


def test_another_workflows_tasks_are_checked_against_its_own_contracts():
    """cryoem's Lambda states name "workflow": the checker reads its task module's models."""
    cryoem = load("cryoem", "committed")[0]
    assert problems_of(copy.deepcopy(cryoem)) == []
    bad = copy.deepcopy(cryoem)
    del state_named(bad, "ValidateInput")["Parameters"]["Payload"]["size_classes"]
    state_named(bad, "CollectOutputs")["ResultSelector"]["flagged.$"] = "$.Payload.flagged"
    problems = problems_of(bad)
    assert any("ValidateInput" in p and "['size_classes']" in p for p in problems), problems
    assert any("CollectOutputs" in p and "has no field 'flagged'" in p for p in problems), problems
    # without "workflow" the state would go to fold's validate_input, whose model it does not fit
    del state_named(bad, "StageInputs")["Parameters"]["Payload"]["workflow"]
    assert any("StageInputs" in p and "neither targets nor targets_digest" in p for p in problems_of(bad))
