"""From validated records to the normalised target list the workflow maps over."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from foldstack.core.errors import InputValidationError
from foldstack.core.fasta import FastaRecord
from foldstack.core.request import RunRequest


class SizeClass(BaseModel):
    """Upper bounds of one GPU size class (from jobs.yaml `size_classes`)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    max_residues: int
    max_chains: int


class Target(BaseModel):
    """One structure to predict. Small on purpose: it travels in Step Functions state."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    length: int
    chains: int
    sha256: str
    size_class: str


def targets_digest(targets: Sequence[Target | Mapping[str, Any]]) -> str:
    """sha256 of the target list's canonical JSON (sorted keys, no whitespace, list order
    kept): what Validate Input hands on instead of the list itself for large runs, and
    what readers of the staged ``input/targets.json`` check it against."""
    items = [t.model_dump(mode="json") if isinstance(t, BaseModel) else dict(t) for t in targets]
    canonical = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def assign_size_class(record: FastaRecord, classes: Mapping[str, SizeClass]) -> str:
    """The first class (in declaration order) whose limits fit the record."""
    for name, limits in classes.items():
        if record.length <= limits.max_residues and len(record.chains) <= limits.max_chains:
            return name
    largest = max(classes.values(), key=lambda c: c.max_residues)
    raise InputValidationError(
        f"{record.length} residues in {len(record.chains)} chains exceeds the largest size class "
        f"({largest.max_residues} residues, {largest.max_chains} chains)",
        code="too_long", source=record.source, record=record.id, line=record.line,
    )


def check_preset(record: FastaRecord, request: RunRequest) -> None:
    n = len(record.chains)
    if request.preset == "multimer" and n < 2:
        raise InputValidationError(
            "preset 'multimer' needs a complex of at least 2 chains joined by ':'",
            code="preset_mismatch", source=record.source, record=record.id, line=record.line,
            hint="use preset 'monomer' for a single chain",
        )
    if request.preset == "monomer" and n > 1:
        raise InputValidationError(
            f"record has {n} chains but preset is 'monomer'", code="preset_mismatch",
            source=record.source, record=record.id, line=record.line, hint="use preset 'multimer'",
        )


def plan_targets(
    records: Sequence[FastaRecord], request: RunRequest, classes: Mapping[str, SizeClass]
) -> list[Target]:
    targets = []
    for record in records:
        check_preset(record, request)
        targets.append(
            Target(
                id=record.id, length=record.length, chains=len(record.chains), sha256=record.sha256,
                size_class=assign_size_class(record, classes),
            )
        )
    return targets
