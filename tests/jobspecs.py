"""The real fold jobs.yaml, read through the job-spec model, for tests that need its parts."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLD_JOBS = REPO / "statemachines" / "fold" / "jobs.yaml"

#: Retry strategies AWS Batch rejects: the local Batch evaluator and the job-spec model
#: must refuse each one too.
BAD_RETRY_STRATEGIES = [
    {"attempts": 0}, {"attempts": 11},
    {"attempts": 2, "evaluate_on_exit": [{"action": "RETRY"}]},
    {"attempts": 2, "evaluate_on_exit": [{"on_exit_code": "1", "action": "MAYBE"}]},
    {"attempts": 2, "evaluate_on_exit": [{"on_status_reason": "Host EC2 (instance*", "action": "RETRY"}]},
    {"attempts": 2, "evaluate_on_exit": [{"on_exit_code": "1*2", "action": "EXIT"}]},
    {"attempts": 2, "evaluate_on_exit": [{"on_status_reason": "*Host", "action": "RETRY"}]},
    {"attempts": 2, "evaluate_on_exit": [{"on_exit_code": str(i), "action": "EXIT"} for i in range(6)]},  # > 5 rules
]


def size_classes_json() -> str:
    """``FOLDSTACK_SIZE_CLASSES`` as Terraform sets it: jobs.yaml's ``size_classes`` as JSON."""
    from foldstack.workflows.specs import JobsFile

    jobs = JobsFile.load(FOLD_JOBS)
    return json.dumps({name: sc.model_dump() for name, sc in jobs.size_classes.items()})
