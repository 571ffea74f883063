"""Configuration discovery: SSM parameters under `/foldstack/<env>/`, published by the
Terraform `config` module.

Required (the error lists every one that is missing):
  state_machine_arn       the fold state machine
  input_prefix            where the client uploads local files: <input_prefix>/<sha256[:16]>/<name>
  allowed_input_prefixes  StringList: inputs must lie under one of them (as Validate Input checks)
  output_prefix           default output URI
  scratch_bucket          scratch bucket name
  region                  the deployment's region
  log_group_batch         CloudWatch log group of the Batch jobs
  queues                  JSON: logical queue name -> job queue ARN
  msa_cache_uri           MSA cache root
Optional:
  workflows               JSON: workflow name -> state machine ARN, for every workload users submit
                          (absent on an older stack: {"fold": state_machine_arn})
  allowed_output_prefixes StringList (default: output_prefix)
  size_classes            JSON, jobs.yaml `size_classes` (default: the checkout's jobs.yaml)
  fasta_limits            JSON overriding FastaLimits (what FOLDSTACK_LIMITS sets in the Lambdas)
  db_uri                  S3 prefix of the sequence databases (checked by `doctor`)
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foldstack.core.errors import ConfigurationError
from foldstack.core.fasta import FastaLimits
from foldstack.core.targets import SizeClass

REQUIRED = (
    "state_machine_arn", "input_prefix", "allowed_input_prefixes", "output_prefix", "scratch_bucket",
    "region", "log_group_batch", "queues", "msa_cache_uri",
)
OPTIONAL = ("workflows", "allowed_output_prefixes", "size_classes", "fasta_limits", "db_uri")
DEFAULT_WORKFLOW = "fold"
_ENV = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ClientConfig(BaseModel):
    """One deployed environment, as the client sees it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: str
    state_machine_arn: str
    input_prefix: str
    allowed_input_prefixes: tuple[str, ...] = Field(min_length=1)
    output_prefix: str
    scratch_bucket: str
    region: str
    log_group_batch: str
    queues: dict[str, str]
    msa_cache_uri: str
    allowed_output_prefixes: tuple[str, ...] = ()
    size_classes: dict[str, SizeClass] = Field(default_factory=dict)
    fasta_limits: FastaLimits = FastaLimits()
    db_uri: str | None = None
    # workflow name -> state machine ARN (fold's is `state_machine_arn` as well)
    workflows: dict[str, str] = Field(default_factory=dict)

    @property
    def deployed_workflows(self) -> dict[str, str]:
        """Every workflow this environment runs -> its state machine ARN (fold first)."""
        deployed = {DEFAULT_WORKFLOW: self.state_machine_arn}
        deployed.update(self.workflows)
        return deployed

    def state_machine_for(self, workflow: str | None = None) -> str:
        """The state machine ARN of `workflow` (default fold); a one-line error naming the
        deployed ones when this environment does not run it."""
        name = workflow or DEFAULT_WORKFLOW
        deployed = self.deployed_workflows
        if name not in deployed:
            raise ConfigurationError(
                f"workflow {name!r} is not deployed in environment {self.env!r}; deployed: "
                f"{', '.join(sorted(deployed))}", code="workflow_not_deployed", env=self.env, workflow=name,
                hint="apply the Terraform of a release that registers it (SSM parameter workflows)")
        return deployed[name]

    @property
    def output_prefixes(self) -> tuple[str, ...]:
        return self.allowed_output_prefixes or (self.output_prefix,)

    @property
    def state_machine_name(self) -> str:
        return self.state_machine_arn.rsplit(":", 1)[-1]

    def execution_arn(self, run_id: str, workflow: str | None = None) -> str:
        """The ARN of execution `run_id` of `workflow`'s state machine (default fold)."""
        machine = self.state_machine_for(workflow)
        head, _, name = machine.partition(":stateMachine:")
        return f"{head}:execution:{name}:{run_id}"

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parameter_path(env: str, name: str = "", prefix: str = "/foldstack") -> str:
    return f"{prefix.rstrip('/')}/{env}/{name}"


def _default_size_classes() -> dict[str, SizeClass]:
    try:
        from foldstack.workflows.specs import load_workflow

        return dict(load_workflow("fold").jobs.size_classes)
    except (FileNotFoundError, OSError):
        return {}


def parse_parameters(env: str, values: dict[str, str], *, prefix: str = "/foldstack") -> ClientConfig:
    """Build the config from parameter name -> value; list every problem at once."""
    missing = [n for n in REQUIRED if not values.get(n, "").strip()]
    if missing:
        paths = ", ".join(parameter_path(env, n, prefix) for n in missing)
        raise ConfigurationError(
            f"environment {env!r} is not (fully) deployed: missing SSM parameters {paths}",
            env=env, missing=missing,
            hint="apply the Terraform `config` module for this environment, or check --env and the region",
        )
    problems: list[str] = []

    def as_json(name: str) -> Any:
        try:
            return json.loads(values[name])
        except (json.JSONDecodeError, KeyError) as exc:
            problems.append(f"{parameter_path(env, name, prefix)} is not valid JSON ({exc})")
            return None

    def csv(name: str) -> tuple[str, ...]:
        return tuple(p.strip() for p in values.get(name, "").split(",") if p.strip())

    data: dict[str, Any] = {n: values[n].strip() for n in REQUIRED}
    data["env"] = env
    data["allowed_input_prefixes"] = csv("allowed_input_prefixes")
    data["queues"] = as_json("queues")
    if values.get("allowed_output_prefixes"):
        data["allowed_output_prefixes"] = csv("allowed_output_prefixes")
    data["size_classes"] = as_json("size_classes") if values.get("size_classes") else _default_size_classes()
    if values.get("fasta_limits"):
        data["fasta_limits"] = as_json("fasta_limits")
    if values.get("db_uri"):
        data["db_uri"] = values["db_uri"].strip()
    if values.get("workflows"):
        data["workflows"] = _workflow_map(as_json("workflows"), data["state_machine_arn"],
                                          parameter_path(env, "workflows", prefix), problems)
    if not data["size_classes"]:
        problems.append(f"no size classes: publish {parameter_path(env, 'size_classes', prefix)} "
                        "(JSON of jobs.yaml `size_classes`)")
    if problems:
        raise ConfigurationError("; ".join(problems), env=env)
    try:
        return ClientConfig.model_validate(data)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"environment {env!r}: invalid SSM configuration: {detail}", env=env) from None


def _workflow_map(value: Any, fold_arn: str, where: str, problems: list[str]) -> dict[str, str]:
    """The `workflows` parameter checked: names -> state machine ARNs; fold's, when listed,
    must be `state_machine_arn` (one stack, one fold machine)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) and ":stateMachine:" in v
                                              for k, v in value.items()):
        problems.append(f"{where} must map workflow names to state machine ARNs")
        return {}
    if value.get(DEFAULT_WORKFLOW, fold_arn) != fold_arn:
        problems.append(f"{where}: fold's state machine differs from state_machine_arn")
    return {k: v.strip() for k, v in value.items()}


def discover(api: Any, env: str, *, prefix: str = "/foldstack") -> ClientConfig:
    """Read `/foldstack/<env>/*` (one paginated GetParametersByPath) and parse it."""
    if not _ENV.match(env or ""):
        raise ConfigurationError(f"environment name {env!r} is not valid", env=env)
    root = parameter_path(env, "", prefix)
    values: dict[str, str] = {}
    for p in api.paginate("ssm", "get_parameters_by_path", "Parameters", cursor_in="NextToken",
                          cursor_out="NextToken", Path=root, Recursive=False, WithDecryption=True):
        values[p["Name"][len(root):]] = p["Value"]
    return parse_parameters(env, values, prefix=prefix)
