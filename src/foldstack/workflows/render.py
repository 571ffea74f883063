"""Render Jinja ASL templates to JSON (`statemachines/<workflow>/definition.asl.json.j2` -> `statemachines/rendered/`).

StrictUndefined, then json.loads (so a template that emits invalid JSON fails here),
then a sorted, indented dump. The rendered files are committed; a test fails on drift.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jinja2

from foldstack.workflows.specs import Workflow, find_statemachines_dir, load_workflow

PLACEHOLDER = re.compile(r"\$\{([a-z0-9_]+)\}")


def render_definition(workflow: Workflow) -> dict[str, Any]:
    # HTML autoescaping would corrupt JSON; the output is parsed and re-dumped below instead.
    env = jinja2.Environment(  # nosec B701
        loader=jinja2.FileSystemLoader(str(workflow.directory)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701
        keep_trailing_newline=True,
    )
    text = env.get_template(workflow.template.name).render(
        jobs=workflow.jobs.model_dump(), knobs=workflow.knobs
    )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{workflow.template} rendered invalid JSON: {exc}") from None


def dumps(definition: dict[str, Any]) -> str:
    return json.dumps(definition, indent=2, sort_keys=True) + "\n"


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def workflows(root: Path | None = None) -> list[Workflow]:
    root = root or find_statemachines_dir()
    return [load_workflow(p.parent.name, root) for p in sorted(root.glob("*/definition.asl.json.j2"))]


def rendered_path(workflow: Workflow) -> Path:
    return workflow.directory.parent / "rendered" / f"{workflow.name}.asl.json"


def render_all(root: Path | None = None, *, check: bool = False) -> list[Path]:
    """Write every rendered definition; with check=True, return the ones that drifted instead."""
    changed = []
    for wf in workflows(root):
        out = rendered_path(wf)
        text = dumps(render_definition(wf))
        if out.exists() and out.read_text() == text:
            continue
        changed.append(out)
        if not check:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
    return changed
