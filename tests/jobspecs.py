"""The real fold jobs.yaml, read through the job-spec model, for tests that need its parts."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLD_JOBS = REPO / "statemachines" / "fold" / "jobs.yaml"


def size_classes_json() -> str:
    """``FOLDSTACK_SIZE_CLASSES`` as Terraform sets it: jobs.yaml's ``size_classes`` as JSON."""
    from foldstack.workflows.specs import JobsFile

    jobs = JobsFile.load(FOLD_JOBS)
    return json.dumps({name: sc.model_dump() for name, sc in jobs.size_classes.items()})
