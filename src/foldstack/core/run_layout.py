"""Where Stage Inputs puts a run's inputs under its scratch prefix, and the done record the
jobs await before reading them. Written by :mod:`foldstack.tasks.stage`, read by
:mod:`foldstack.steps.readiness` (and the steps through :mod:`foldstack.steps.common`); both
layers import it from here, as tasks may not import steps."""

from __future__ import annotations

STAGE_DIR = "input"  # Stage Inputs' files, relative to the run directory
STAGE_DONE = "stage.done.json"  # its done record, under STAGE_DIR, written last
REQUEST_NAME = "request.json"  # the validated request, under STAGE_DIR
TARGETS_NAME = "targets.json"  # the normalised target list, under STAGE_DIR
STAGE_DONE_PARTS = (STAGE_DIR, STAGE_DONE)
TARGETS_PARTS = (STAGE_DIR, TARGETS_NAME)


def staged_fasta_name(target: str) -> str:
    """A target's FASTA relative to ``<run>/input/`` (the name in ``stage.done.json``)."""
    return f"targets/{target}.fasta"
