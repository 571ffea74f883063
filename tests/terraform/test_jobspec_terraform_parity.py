"""Terraform's reading of jobs.yaml stays in step with the model, foldstack.workflows.specs.JobsFile.

Terraform ``yamldecode``s every workflow's jobs.yaml itself (modules/batch: queues, compute
environments, job definitions; modules/workflow: which placeholders must be filled;
modules/platform: images, job roles, size classes for modules/config). Python reads the
same files through the model (renderer, local engine, cost estimate). Two checks:

* keys: every attribute path Terraform reads off a decoded jobs.yaml is a field of the
  model (found by following the ``for`` bindings of the .tf files from ``yamldecode``);
  a key Terraform reads without ``try()`` is one the model requires (or, for the
  size-class choice, one the model couples the same way);
* values: ``terraform console`` evaluates the modules' own locals on the deployed
  jobs.yaml files, and every queue, job definition, placeholder, image, job name and
  size class Terraform derives equals what the model yields.

No provider, no init, no AWS: the locals are copied into a scratch root (well under 10 s).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from foldstack.local.jobs import placeholder_values
from foldstack.workflows import specs
from foldstack.workflows.specs import JobsFile

from .conftest import need_terraform

pytestmark = pytest.mark.terraform

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
TF_FILES = sorted(p for p in TERRAFORM.rglob("*.tf") if ".terraform" not in p.parts)


def deployed_jobs_files() -> dict[str, Path]:
    """workflow -> jobs.yaml, as terraform/envs/_shared passes them to modules/platform: one
    per entry of the workload registry (statemachines/workloads.yaml, yamldecode'd there)."""
    text = (TERRAFORM / "envs" / "_shared" / "main.tf").read_text()
    assert 'yamldecode(file("${local.repo_root}/statemachines/workloads.yaml"))' in text, \
        "terraform/envs/_shared must deploy the registered workloads"
    assert 'job_spec_file   = "${local.repo_root}/statemachines/${name}/jobs.yaml"' in text
    registry = yaml.safe_load((REPO / "statemachines" / "workloads.yaml").read_text())
    found = {wf: REPO / "statemachines" / wf / "jobs.yaml" for wf in registry}
    assert found, "no workflow in statemachines/workloads.yaml"
    return found


JOBS_FILES = deployed_jobs_files()
MODELS = {wf: JobsFile.load(path) for wf, path in JOBS_FILES.items()}


# ------------------------------------------------------------------ types of the model

# A type is a model class, ("map", T), ("list", T), or "scalar".
def _type_of(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _type_of(args[0]) if len(args) == 1 else "scalar"
    if origin is dict:
        return ("map", _type_of(args[1]))
    if origin in (list, tuple):
        return ("list", _type_of(args[0]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return "scalar"


# ------------------------------------------------------------ what Terraform reads

def _span(text: str, start: int, stop: str = ":") -> str:
    """The expression from ``start`` up to a ``stop`` character (or closing bracket) at depth 0."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif c in stop and depth == 0:
            break
        i += 1
    return text[start:i].strip()


def _guarded(text: str, pos: int) -> bool:
    """Is the expression at ``pos`` inside a try(...) / can(...) call (within its own brackets)?"""
    depth = 0
    for i in range(pos - 1, -1, -1):
        c = text[i]
        if c in ")]}":
            depth += 1
        elif c in "([{":
            if depth:
                depth -= 1
            elif c != "(":
                return False
            elif re.search(r"\b(try|can)\s*$", text[:i]):
                return True
    return False


_CHAIN = re.compile(r"\b([a-z_][a-z0-9_]*)((?:\.[a-z_][a-z0-9_]*|\[[^\[\]]*\])+)")
_STEP = re.compile(r"\.([a-z_][a-z0-9_]*)|\[[^\[\]]*\]")


class UnknownKey(Exception):
    pass


def _walk(current: Any, steps: str, reads: list[str]) -> Any:
    """Follow ``.attr`` / ``[key]`` steps from a type, recording the model fields read."""
    for step in _STEP.finditer(steps):
        attr = step.group(1)
        if isinstance(current, type) and issubclass(current, BaseModel):
            if attr not in current.model_fields:
                raise UnknownKey(f"`{attr}` is not a key of {current.__name__}")
            reads.append(f"{current.__name__}.{attr}")
            current = _type_of(current.model_fields[attr].annotation)
        elif isinstance(current, tuple):  # a map key or list index, by `[...]` or `.key`
            current = current[1]
        else:
            return None
    return current


def _root(root: str, steps: str, bindings: dict[str, Any], local_types: dict[str, Any]) -> tuple[Any, str]:
    """(type of the chain's root, the steps after it); ``local.<name>`` is one root."""
    if root == "local":
        name = _STEP.match(steps).group(1)
        return local_types.get(name), steps[len(name) + 1:]
    return bindings.get(root), steps


def _resolve(expr: str, bindings: dict[str, Any], local_types: dict[str, Any]) -> Any:
    """Type of a `for` source expression (a chain, maybe inside try()/values()/keys())."""
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")"):
        expr = expr[1:-1].strip()
    call = re.fullmatch(r"(try|values|keys)\((.*)\)", expr, re.S)
    if call:
        t = _resolve(_span(call.group(2), 0, stop=","), bindings, local_types)
        if call.group(1) == "values" and isinstance(t, tuple):
            return ("list", t[1])
        if call.group(1) == "keys":
            return None if t is None else ("list", "scalar")
        return t
    m = _CHAIN.fullmatch(expr) or re.fullmatch(r"([a-z_][a-z0-9_]*)()", expr)
    if not m:
        return None
    root_type, steps = _root(*m.groups(), bindings, local_types)
    try:
        return None if root_type is None else _walk(root_type, steps, [])
    except UnknownKey:
        return None


@functools.cache
def terraform_reads() -> tuple[dict[str, list[tuple[str, str, bool]]], tuple[str, ...]]:
    """Per .tf file: (model field, the expression, inside try()/can()) for every read of a
    decoded jobs.yaml; and the reads of keys the model does not have."""
    out: dict[str, list[tuple[str, str, bool]]] = {}
    unknown: list[str] = []
    for path in TF_FILES:
        text = re.sub(r"#[^\n]*", "", path.read_text())
        if "yamldecode(" not in text:
            continue
        local_types: dict[str, Any] = {}
        for m in re.finditer(r"^\s*(\w+)\s*=\s*yamldecode\(", text, re.M):
            local_types[m.group(1)] = JobsFile
        for m in re.finditer(r"^\s*(\w+)\s*=\s*\{\s*for\s+\w+\s*,\s*\w+\s+in\s[^:]+:\s*\w+\s*=>\s*yamldecode\(",
                             text, re.M):
            local_types[m.group(1)] = ("map", JobsFile)
        # Bindings of `for k, v in EXPR` / `for v in EXPR`, each in force from where it appears.
        binds: list[tuple[int, str, Any]] = []
        for m in re.finditer(r"\bfor\s+(\w+)(?:\s*,\s*(\w+))?\s+in\b", text):
            source = _resolve(_span(text, m.end()), {n: t for _, n, t in binds}, local_types)
            binds.append((m.start(), m.group(2) or m.group(1), source[1] if isinstance(source, tuple) else None))
            if m.group(2):
                binds.append((m.start(), m.group(1), None))
        reads: list[tuple[str, str, bool]] = []
        for m in _CHAIN.finditer(text):
            scope = {n: t for pos, n, t in binds if pos < m.start()}
            root_type, steps = _root(*m.groups(), scope, local_types)
            if root_type is None or root_type == "scalar":
                continue
            found: list[str] = []
            try:
                _walk(root_type, steps, found)
            except UnknownKey as err:
                unknown.append(f"{path.relative_to(REPO)}: `{m.group(0)}`: {err}")
            guarded = _guarded(text, m.start())
            reads += [(name, m.group(0), guarded) for name in found]
        out[str(path.relative_to(REPO))] = reads
    return out, tuple(unknown)


# Read without try(), yet optional in the model: Terraform reads them in the branches of
# `can(j.size_classes) ? ... : ...`, and the model couples them the same way (test below).
SIZE_CLASS_CHOICE = {"JobSpec.size_classes", "JobSpec.queue_by_size_class", "JobSpec.resources", "JobSpec.queue"}


def test_the_scan_sees_the_reads_terraform_is_known_to_make():
    """Guards the scanner itself: if these vanish, the regexes went stale, not Terraform."""
    reads_by_file, _ = terraform_reads()
    seen = {name for reads in reads_by_file.values() for name, _, _ in reads}
    assert {
        "JobsFile.queues", "JobsFile.jobs", "JobsFile.size_classes", "QueueSpec.tier", "QueueSpec.purchase",
        "QueueSpec.size_class", "JobSpec.image", "JobSpec.command", "JobSpec.parameters", "JobSpec.timeout_seconds",
        "JobSpec.retry", "JobSpec.size_classes", "JobSpec.queue_by_size_class", "RetrySpec.attempts",
        "RetrySpec.evaluate_on_exit", "ExitRule.action", "ExitRule.on_exit_code", "Resources.vcpu",
        "Resources.memory_mib", "Resources.gpus", "Resources.instance_types",
    } <= seen, sorted(seen)
    assert {"terraform/modules/batch/main.tf", "terraform/modules/workflow/main.tf",
            "terraform/modules/platform/main.tf"} <= set(reads_by_file)


def test_every_key_terraform_reads_is_in_the_model_and_required_where_terraform_needs_it():
    reads_by_file, unknown = terraform_reads()
    problems = list(unknown)
    required = {}
    for model in (JobsFile, specs.JobSpec, specs.QueueSpec, specs.Resources, specs.RetrySpec, specs.ExitRule,
                  specs.SizeClassSpec):
        required |= {f"{model.__name__}.{f}": i.is_required() for f, i in model.model_fields.items()}
    for tf, reads in reads_by_file.items():
        for name, expr, guarded in reads:
            if not guarded and not required[name] and name not in SIZE_CLASS_CHOICE:
                problems.append(f"{tf}: `{expr}` reads {name} without try(), but the model lets it be absent")
    assert not problems, "\n".join(problems)


def test_the_model_couples_size_classes_and_queue_choice_as_terraform_does():
    raw = json.loads(MODELS["fold"].model_dump_json())
    predict = raw["jobs"]["predict"]
    with_queue = {**predict, "queue": "gpu-small", "queue_by_size_class": None}
    with pytest.raises(ValueError, match="queue_by_size_class"):
        JobsFile.model_validate({**raw, "jobs": {**raw["jobs"], "predict": with_queue}})
    msa = raw["jobs"]["msa"]
    routed = {**msa, "queue": None, "queue_by_size_class": dict.fromkeys(raw["size_classes"], "cpu-spot")}
    with pytest.raises(ValueError, match="queue_by_size_class"):
        JobsFile.model_validate({**raw, "jobs": {**raw["jobs"], "msa": routed}})


def test_size_classes_match_modules_config_variable_type():
    """platform hands local.specs[client_workflow].size_classes to modules/config as this type."""
    text = (TERRAFORM / "modules" / "config" / "variables.tf").read_text()
    block = re.search(r'variable "size_classes"\s*\{.*?type\s*=\s*map\(object\(\{(.*?)\}\)\)', text, re.S).group(1)
    attrs = dict(re.findall(r"(\w+)\s*=\s*(optional\()?", block))
    fields = specs.SizeClassSpec.model_fields
    assert set(attrs) == set(fields)
    assert {a: not bool(opt) for a, opt in attrs.items()} == {f: i.is_required() for f, i in fields.items()}


def test_rule_limits_match_the_batch_precondition():
    text = (TERRAFORM / "modules" / "batch" / "main.tf").read_text()
    limit = re.search(r"length\(each\.value\.evaluate_on_exit\)\s*<=\s*(\d+)", text)
    assert limit and int(limit.group(1)) == specs.MAX_RULES
    assert '.action, "") == "EXIT"' in text  # the last rule must EXIT; the model requires EXIT on "*"


# --------------------------------------------------------------- what Terraform derives

def _locals_entries(tf: Path) -> dict[str, str]:
    """Top-level entries of the `locals` block(s) of a terraform-fmt'ed file."""
    entries: dict[str, list[str]] = {}
    for block in re.findall(r"^locals \{\n(.*?)^\}", tf.read_text(), re.S | re.M):
        current = None
        for line in block.splitlines():
            m = re.match(r"^  ([a-z_][a-z0-9_]*)\s*=", line)
            if m:
                current = m.group(1)
                entries[current] = []
            if current:
                entries[current].append(line)
    return {k: "\n".join(v) for k, v in entries.items()}


def _scratch_root(tf: Path, wanted: list[str], dest: Path) -> list[str]:
    """Copy `wanted` locals (and the locals they use) into dest/main.tf; return the vars used."""
    entries = _locals_entries(tf)
    chosen: list[str] = []
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name not in chosen:
            chosen.append(name)
            todo += [n for n in re.findall(r"\blocal\.(\w+)", entries[name]) if n not in chosen]
    body = "\n".join(entries[n] for n in chosen)
    used = sorted(set(re.findall(r"\bvar\.(\w+)", body)))
    assert not re.search(r"\b(data|module|resource)\.", body), body
    dest.mkdir(parents=True)
    (dest / "main.tf").write_text("".join(f'variable "{v}" {{}}\n' for v in used) + f"locals {{\n{body}\n}}\n")
    return used


def _console(root: Path, expression: str) -> Any:
    terraform = need_terraform("terraform console (the parity check)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "AWS_"))}
    env.update({"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"})
    proc = subprocess.run([terraform, "console"], input=expression + "\n", cwd=root, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    literal = proc.stdout.strip().replace("$${", "${").replace("%%{", "%{")
    return json.loads(json.loads(literal))


@pytest.fixture(scope="module")
def terraform_view(tmp_path_factory) -> dict[str, Any]:
    """What modules/batch, workflow and platform derive from the deployed jobs.yaml files."""
    base = tmp_path_factory.mktemp("jobspec-parity")
    files = {wf: str(p) for wf, p in JOBS_FILES.items()}
    view: dict[str, Any] = {}
    batch = base / "batch"
    assert _scratch_root(TERRAFORM / "modules/batch/main.tf", ["queues", "job_definitions"], batch) == [
        "job_spec_files"]
    (batch / "terraform.tfvars.json").write_text(json.dumps({"job_spec_files": files}))
    view["batch"] = _console(batch, "jsonencode({queues = local.queues, job_definitions = local.job_definitions})")
    platform = base / "platform"
    assert _scratch_root(TERRAFORM / "modules/platform/main.tf", ["images", "job_names", "specs"], platform) == [
        "workflows"]
    workflows = {wf: {"job_spec_file": p, "definition_file": ""} for wf, p in files.items()}
    (platform / "terraform.tfvars.json").write_text(json.dumps({"workflows": workflows}))
    view["platform"] = _console(platform, "jsonencode({images = local.images, job_names = local.job_names, "
                                          "size_classes = {for wf, s in local.specs : wf => s.size_classes}})")
    view["workflow"] = {}
    for wf, path in files.items():
        root = base / f"workflow-{wf}"
        assert _scratch_root(TERRAFORM / "modules/workflow/main.tf", ["expected_queues", "expected_job_definitions"],
                             root) == ["job_spec_file"]
        (root / "terraform.tfvars.json").write_text(json.dumps({"job_spec_file": path}))
        view["workflow"][wf] = _console(root, "jsonencode({queues = local.expected_queues, "
                                              "job_definitions = local.expected_job_definitions})")
    return view


def _model_job_definitions() -> dict[str, dict[str, Any]]:
    out = {}
    for wf, jobs in MODELS.items():
        for job in jobs.jobs.values():
            for name, size_class in job.definition_names():
                res = job.resources_for(size_class)
                key = name if size_class is None else f"{name}_{size_class}"
                out[f"{wf}/{key}"] = {
                    "workflow": wf, "key": key, "job": name, "size_class": size_class or "", "image": job.image,
                    "queue": job.queue_for(size_class), "command": job.command, "parameters": job.parameters,
                    "timeout": job.timeout_seconds, "attempts": job.retry.attempts,
                    "evaluate_on_exit": [r.model_dump(include={"action", "on_status_reason", "on_reason",
                                                                "on_exit_code"}) for r in job.retry.evaluate_on_exit],
                    "resources": [{"type": "VCPU", "value": str(res.vcpu)}, {"type": "MEMORY",
                                  "value": str(res.memory_mib)}] + ([{"type": "GPU", "value": str(res.gpus)}]
                                                                     if res.gpus > 0 else []),
                }
    return out


def test_job_definitions_are_what_the_model_yields(terraform_view):
    assert terraform_view["batch"]["job_definitions"] == _model_job_definitions()


def test_queues_are_what_the_model_yields(terraform_view):
    expected: dict[str, Any] = {}
    for wf in sorted(MODELS):  # merge() over the map of workflows: keys in order, later wins
        jobs = MODELS[wf]
        for q, spec in jobs.queues.items():
            types_ = [t for job in jobs.jobs.values() for cls, r in (job.size_classes or {}).items()
                      if spec.size_class == cls for t in r.instance_types]
            expected[q] = {"tier": spec.tier, "purchase": spec.purchase, "size_class": spec.size_class,
                           "gpu_instance_types": list(dict.fromkeys(types_))}
    assert terraform_view["batch"]["queues"] == expected


def test_placeholders_terraform_requires_are_those_the_local_engine_fills(terraform_view):
    """modules/workflow fills queue_<q>_arn / job_definition_<key>_arn (- as _) for what it
    expects; the local engine (foldstack.local.jobs.placeholder_values) fills the same names."""
    for wf, jobs in MODELS.items():
        expected = terraform_view["workflow"][wf]
        names = {f"queue_{q.replace('-', '_')}_arn" for q in expected["queues"]}
        names |= {f"job_definition_{k.replace('-', '_')}_arn" for k in expected["job_definitions"]}
        assert names == set(placeholder_values(jobs)), wf
        assert set(expected["job_definitions"]) == {
            d["key"] for d in _model_job_definitions().values() if d["workflow"] == wf}


def test_images_job_names_and_size_classes_are_the_models(terraform_view):
    platform = terraform_view["platform"]
    assert set(platform["images"]) == {j.image for m in MODELS.values() for j in m.jobs.values()}
    assert set(platform["job_names"]) == {name for m in MODELS.values() for name in m.jobs}
    for wf, jobs in MODELS.items():
        expected = {k: v.model_dump(exclude_none=True) for k, v in jobs.size_classes.items()}
        assert platform["size_classes"][wf] == expected
