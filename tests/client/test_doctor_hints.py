"""Every command a `doctor` fix hint names exists, as written: `make` targets run under
`make -n` outside CI, `foldstack` commands and options are in the CLI, `aws` operations and
parameters are in botocore's models, `gh workflow run` files can be dispatched, and the docs
they point to are there. Prod hints never say `make apply` (refused outside CI)."""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
from pathlib import Path

import botocore.session
import pytest
import typer
import yaml

from foldstack.client import doctor, doctor_catalogue, doctor_hints

REPO = Path(__file__).resolve().parents[2]
AWS_S3_HIGH_LEVEL = {"cp", "sync", "ls", "mv", "rm", "mb", "rb"}


def _commands(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def _fill(command: str) -> str:
    """Placeholders as a person would fill them in."""
    return (command.replace("<sha>", "abc123").replace("<engine>", "esmfold").replace("<id>", "r1")
            .replace("<dir>", "/scratch").replace("<json>", "{}"))


def _check_make(words: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_ACTIONS", "ENV", "IMAGE_TAG", "MAKEFLAGS")}
    proc = subprocess.run(["make", "--no-print-directory", "-n", *words], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"`make {' '.join(words)}` fails: {proc.stderr[-500:]}"


def _check_foldstack(words: list[str]) -> None:
    from foldstack.cli import app

    command, depth = typer.main.get_command(app), 0
    while hasattr(command, "commands"):  # a group: the next word names one of its commands
        assert depth < len(words) and words[depth] in command.commands, f"no `foldstack {' '.join(words)}` command"
        command, depth = command.commands[words[depth]], depth + 1
    path = words[:depth]
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    missing = [o for o in words[depth:] if o.startswith("--") and o not in known]
    assert not missing, f"`foldstack {' '.join(path)}` has no option {missing}"


def _check_aws(words: list[str]) -> None:
    service, operation = words[0], words[1]
    if service == "s3" and operation in AWS_S3_HIGH_LEVEL:
        return
    model = botocore.session.get_session().get_service_model(service)
    name = "".join(part.capitalize() for part in operation.split("-"))
    assert name in model.operation_names, f"aws {service} has no operation {operation}"
    members = {m.lower() for m in model.operation_model(name).input_shape.members}
    for option in (w for w in words if w.startswith("--")):
        assert option[2:].replace("-", "") in members, f"aws {service} {operation} has no {option}"


def _check_gh(words: list[str]) -> None:
    assert words[:2] == ["workflow", "run"], words
    workflow = REPO / ".github" / "workflows" / words[2]
    assert workflow.is_file(), f"{workflow} does not exist"
    on = yaml.safe_load(workflow.read_text()).get(True) or {}  # YAML reads `on:` as True
    assert "workflow_dispatch" in on, f"{workflow.name} cannot be run by hand (no workflow_dispatch)"


def check_command(command: str) -> None:
    words = _fill(command).split()
    tool, rest = words[0], words[1:]
    checkers = {"make": _check_make, "foldstack": _check_foldstack, "aws": _check_aws, "gh": _check_gh}
    assert tool in checkers, f"a hint names `{command}`: a command of a kind this test cannot check"
    checkers[tool](rest)


@pytest.mark.parametrize("env", ["dev", "prod"])
@pytest.mark.slow
def test_every_command_a_hint_names_exists(env):
    texts = doctor_hints.every_hint(env)
    commands = sorted({c for text in texts for c in _commands(text)})
    assert len(commands) >= 8, commands  # make, foldstack (3), aws (4), gh
    for command in commands:
        check_command(command)
    for doc in sorted({d for text in texts for d in re.findall(r"docs/[\w-]+\.md", text)}):
        assert (REPO / doc).is_file(), f"a hint points to {doc}, which does not exist"
    for text in texts:
        if "docs/architecture.md, Database lifecycle" in text:
            assert "## Database lifecycle" in (REPO / "docs" / "architecture.md").read_text()


def test_prod_hints_never_suggest_applying_by_hand():
    for text in doctor_hints.every_hint("prod"):
        assert not re.search(r"make (plan )?apply", text), text
    images = doctor_hints.images_hint("prod")
    assert "deploy.yml" in images and "promotes" in images
    assert "`make apply ENV=dev`" in doctor_hints.images_hint("dev")
    # terraform.mk refuses prod applies outside CI: the hints know the same environments
    assert re.search(r"filter prod,\$\(ENV\)\),\$\(filter apply", (REPO / "terraform" / "terraform.mk").read_text())
    assert doctor_hints.CI_ONLY_ENVS == ("prod",)


def test_the_check_catches_a_hint_that_names_nothing():
    for bad in ("make plan-and-apply ENV=dev", "foldstack weights download esmfold", "foldstack weights fetch --to x",
                "aws fsx describe-associations", "aws stepfunctions start-execution --machine x",
                "gh workflow run ci.yml", "terraform apply"):
        with pytest.raises(AssertionError):
            check_command(bad)


def test_every_hint_builder_is_checked_and_doctor_writes_no_hint_of_its_own():
    source = inspect.getsource(doctor_hints.every_hint)
    builders = [n for n, f in vars(doctor_hints).items() if n.endswith("_hint") and inspect.isfunction(f)]
    assert builders and all(f"{n}(" in source for n in builders), "every_hint must call every *_hint builder"
    for module in (doctor, doctor_catalogue):
        tree = ast.parse(inspect.getsource(module))
        documented = (ast.Module, ast.FunctionDef, ast.ClassDef)
        docstrings = {ast.get_docstring(n, clean=False) for n in ast.walk(tree) if isinstance(n, documented)}
        quoted = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                  and "`" in n.value and n.value not in docstrings]
        assert not quoted, f"{module.__name__} writes a command into a hint itself: {quoted} (use doctor_hints)"
