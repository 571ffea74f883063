"""The fold options `foldstack run --local` and `foldstack submit` share, defined once:
``--db NAME=VERSION`` (repeatable), ``--db-preset``, ``--num-models``, ``--num-seeds``,
``--relax``, ``--max-failed-fraction`` and ``--msa-gpu``, each a field of the run request
(:class:`foldstack.core.request.RunRequest`); and ``--workflow``, with the check that keeps
fold's options off another workflow's submission (:func:`check_workflow_args`).

:func:`fold_options` checks them and returns the keyword arguments of
``Client.submit``; a bad value is a one-line ``invalid_request`` error (exit 2,
:mod:`foldstack.cli.output`) before anything is read, uploaded or started.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

import typer

from foldstack.cli.output import check_choice
from foldstack.core.errors import InputValidationError

DbOpt = Annotated[list[str], typer.Option(
    "--db", metavar="NAME=VERSION",
    help="search this version of a database instead of its CURRENT (repeatable; alphafold2 only; "
         "`foldstack db list` shows what is installed)")]
DbPresetOpt = Annotated[str | None, typer.Option(
    "--db-preset", help="full_dbs | reduced_dbs | colabfold (alphafold2; default reduced_dbs)")]
NumModelsOpt = Annotated[int | None, typer.Option(
    "--num-models", help="alphafold2: how many of the preset's models run (1-5; default 5)")]
NumSeedsOpt = Annotated[int | None, typer.Option(
    "--num-seeds", help="alphafold2: predictions per model (1-20; default 1 monomer, 5 multimer)")]
RelaxOpt = Annotated[str | None, typer.Option(
    "--relax", help="Amber relaxation: none | best | all (default: best for alphafold2, none for esmfold)")]
MsaGpuOpt = Annotated[bool, typer.Option(
    "--msa-gpu", help="alphafold2 with MMseqs2 (--msa-tool mmseqs2 or --db-preset colabfold): run the chain "
                      "searches as one job on a GPU queue, falling back to the CPU MSA jobs")]
MaxFailedOpt = Annotated[float | None, typer.Option(
    "--max-failed-fraction", metavar="F",
    help="failure budget: the run succeeds (outcome partial) while at most this fraction of its targets "
         "fail (0-1; default: knobs.yaml failure_budget, 0.1 as shipped); what folded is published either way")]


def parse_db_pins(values: list[str]) -> dict[str, str]:
    """``["uniref90=2024_01", ...]`` -> ``{"uniref90": "2024_01"}``; a malformed or repeated
    name is an error naming the value (names and versions are checked by the request)."""
    pins: dict[str, str] = {}
    for value in values:
        name, sep, version = value.partition("=")
        name, version = name.strip(), version.strip()
        if not sep or not name or not version:
            raise InputValidationError(f"--db {value!r}: use NAME=VERSION, e.g. --db uniref90=2024_01",
                                       code="invalid_request")
        if name in pins and pins[name] != version:
            raise InputValidationError(f"--db {name} given twice ({pins[name]} and {version})",
                                       code="invalid_request")
        pins[name] = version
    return pins


def fold_options(engine: str, db: list[str], db_preset: str | None, num_models: int | None,
                 num_seeds: int | None, relax: str | None, max_failed_fraction: float | None = None,
                 msa_gpu: bool = False, msa_tool: str | None = None) -> dict[str, Any]:
    """The checked options as ``Client.submit`` keyword arguments (None: the request's default)."""
    from foldstack.core.request import DbPreset, Engine, MsaTool, Relax, RunRequest

    check_choice("--engine", engine, get_args(Engine))
    check_choice("--msa-tool", msa_tool, get_args(MsaTool))
    check_choice("--db-preset", db_preset, get_args(DbPreset))
    check_choice("--relax", relax, get_args(Relax))
    options = {"db_versions": parse_db_pins(db) or None, "db_preset": db_preset, "num_models": num_models,
               "num_seeds": num_seeds, "relax": relax, "max_failed_fraction": max_failed_fraction,
               "msa_gpu": msa_gpu or None}
    given = {k: v for k, v in options.items() if v is not None}
    if engine == "esmfold" and set(given) - {"relax", "max_failed_fraction"}:
        raise InputValidationError("--db, --db-preset, --num-models, --num-seeds and --msa-gpu apply to alphafold2 "
                                   "only (esmfold is single-sequence, one model)", code="invalid_request")
    try:  # the request's own rules (ranges, database names and versions), before anything is written
        RunRequest.model_validate({"inputs": ["x.fasta"], "output_uri": "x", "engine": engine, **given,
                                   **({"msa_tool": msa_tool} if msa_tool else {})})
    except ValueError as exc:
        raise InputValidationError(_first_line(exc), code="invalid_request") from None
    return options


def _first_line(exc: Exception) -> str:
    """A request validation error as one line: the option it concerns and what is wrong."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc).splitlines()[0]
    first = errors()[0]
    field = str((first.get("loc") or ("",))[0])
    flag = {"db_versions": "--db"}.get(field, f"--{field.replace('_', '-')}" if field else "")
    message = str(first.get("msg", exc)).removeprefix("Value error, ")
    return f"{flag}: {message}" if flag else message


def _client_workflows() -> list[str]:
    """The registered workflows users submit (statemachines/workloads.yaml), for help and checks."""
    from foldstack.workflows.registry import client_workflows

    try:
        return client_workflows()
    except (OSError, ValueError):  # no statemachines/ beside this installation
        return ["fold"]


# The registered client workflows, read once when the CLI loads (its help names them).
WorkflowOpt = Annotated[str, typer.Option("--workflow", "-w", help=f"what to run: {' | '.join(_client_workflows())}")]

# The options only a fold request has (flag, keyword of submit_cmd).
_FOLD_ONLY = (("--engine", "engine"), ("--preset", "preset"), ("--msa-tool", "msa_tool"), ("--db", "db"),
              ("--db-preset", "db_preset"), ("--num-models", "num_models"), ("--num-seeds", "num_seeds"),
              ("--relax", "relax"), ("--max-failed-fraction", "max_failed_fraction"), ("--msa-gpu", "msa_gpu"))


def check_workflow_args(workflow: str, inputs: list[str], options: dict[str, Any]) -> None:
    """`submit --workflow W`: W must be a registered client workflow; another workflow than
    fold takes one request (a dataset folder holding request.json, or a request JSON file)
    and none of fold's options. One-line usage errors (exit 2)."""
    from foldstack.core.errors import InputValidationError

    names = _client_workflows()
    if workflow not in names:
        raise InputValidationError(f"--workflow {workflow!r} is not a workflow users submit; one of: "
                                   f"{', '.join(names)}", code="invalid_request")
    if workflow == "fold":
        return
    given = [flag for flag, key in _FOLD_ONLY if options.get(key) not in (None, [], (), False)]
    if given:
        raise InputValidationError(f"{', '.join(given)}: fold options, not options of --workflow {workflow}",
                                   code="invalid_request")
    if len(inputs) != 1:
        raise InputValidationError(f"--workflow {workflow} takes one input: a dataset folder holding request.json "
                                   f"or a request JSON file (got {len(inputs)})", code="invalid_request")
