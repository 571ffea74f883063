"""Fill Terraform ``templatefile()`` placeholders (``${name}``) with local values.

Rendered definitions keep deploy-time identifiers as ``${name}`` (``docs/terraform.md``);
Terraform fills them on AWS, :func:`substitute` fills them for the local engine:

==================================  ==================================================
``${partition}``                    ``aws``
``${account_id}`` / ``${region}``   ``000000000000`` / ``us-east-1``
``${lambda_<name>_arn}``            local function ARN, for the fold lambdas and every
                                    ``lambdas/<name>/handler.py``
``${queue_<queue key>_arn}``        local job-queue ARN per jobs.yaml ``queues`` key
                                    (``-`` becomes ``_``: ``queue_cpu_spot_arn``)
``${job_definition_<job>_arn}``     local job-definition ARN (jobs without size classes)
``${job_definition_<job>_<size>_arn}``  one per size class
``${scratch_mount}``, ``${db_mount}``, ``${weights_dir}``, ...   caller-supplied
==================================  ==================================================

Terraform's escape ``$${`` yields a literal ``${``. Values are JSON-string escaped
(placeholders sit inside JSON strings). Any placeholder left without a value raises
:class:`PlaceholderError` naming all of them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from foldstack.local.errors import PlaceholderError
from foldstack.local.jobs import ACCOUNT_ID, REGION, lambda_arn, placeholder_key, placeholder_values
from foldstack.local.lambdas import DEFAULT_LAMBDAS
from foldstack.workflows.specs import JobsFile

_PLACEHOLDER = re.compile(r"(\$?)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

CALLER_SUPPLIED = ("scratch_mount", "db_mount", "weights_dir")


def late_marker(name: str) -> str:
    """The stand-in for a caller-supplied value whose substitution is deferred to the
    parsed program (see ``moto_parse.parse_definition``): plain characters only, so it
    survives JSON escaping and moto's parser unchanged."""
    return f"@@foldstack-late-{name}@@"


def find_placeholders(definition: str) -> list[str]:
    """Names of the ``${name}`` placeholders in ``definition`` (escaped ``$${`` skipped)."""
    return sorted({m.group(2) for m in _PLACEHOLDER.finditer(definition) if not m.group(1)})


def local_values(
    jobs: JobsFile | Path | str | None,
    *,
    lambdas: Iterable[str] = DEFAULT_LAMBDAS,
    scratch_mount: str | Path | None = None,
    db_mount: str | Path | None = None,
    weights_dir: str | Path | None = None,
    extra: Mapping[str, object] | None = None,
) -> dict[str, str]:
    """Every local placeholder value derivable from jobs.yaml, plus the caller's paths."""
    values: dict[str, str] = {"partition": "aws", "account_id": ACCOUNT_ID, "region": REGION}
    for name in dict.fromkeys([*DEFAULT_LAMBDAS, *lambdas]):
        values[placeholder_key("lambda", name, "arn")] = lambda_arn(name)
    if jobs is not None:
        jobs_file = jobs if isinstance(jobs, JobsFile) else JobsFile.load(jobs)
        values.update(placeholder_values(jobs_file))
    for key, value in (("scratch_mount", scratch_mount), ("db_mount", db_mount), ("weights_dir", weights_dir)):
        if value is not None:
            values[key] = str(value)
    values.update({k: str(v) for k, v in (extra or {}).items()})
    return values


def substitute(definition: str, values: Mapping[str, object]) -> str:
    """Replace every ``${name}``; raise PlaceholderError listing those without a value."""
    missing = [name for name in find_placeholders(definition) if name not in values]
    if missing:
        raise PlaceholderError(missing)

    def _sub(match: re.Match[str]) -> str:
        if match.group(1):  # "$${x}" -> literal "${x}"
            return "${" + match.group(2) + "}"
        return json.dumps(str(values[match.group(2)]))[1:-1]

    return _PLACEHOLDER.sub(_sub, definition)
