"""A toy workload, registered in a temporary ``statemachines/`` the way a new workload is
(``docs/onboarding.md``): an entry in ``workloads.yaml``, a folder with its ``jobs.yaml``
and ``knobs.yaml``, and a request model. Tests that need a second client workflow without
depending on cryoem use it (the client's ``submit --workflow``, the onboarding walk).

    root = write_statemachines(tmp_path)            # fold (the real one) + toy
    monkeypatch.setenv("FOLDSTACK_STATEMACHINES_DIR", str(root))

The toy request names its input files (``files``: files, folders or ``s3://`` URIs; an
optional ``reference``) in ``upload_fields``, as a workload's model does for the client to
upload them; ``ToyRequest.run_id()`` is the deterministic run id.

Its jobs: ``toy_prepare`` (one per batch of inputs, CPU) runs ``foldstack step toy
prepare``; ``toy_gpu`` (one job definition per size class) runs ``foldstack step toy
<stage>`` for the stage it is submitted with, as cryoem's ``cryoem_gpu`` does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tests.conftest import REPO

WORKFLOW = "toy"
REQUEST_MODEL = "tests.onboarding.toy_workload:ToyRequest"
_EXIT = [{"on_status_reason": "Host EC2*", "action": "RETRY"}, {"on_exit_code": "*", "action": "EXIT"}]

JOBS: dict[str, Any] = {
    "schema_version": 1,
    "workflow": WORKFLOW,
    "queues": {
        "cpu-spot": {"tier": "cpu", "purchase": "spot"},
        "toy-gpu-small": {"tier": "gpu", "purchase": "on_demand", "size_class": "small"},
        "toy-gpu-large": {"tier": "gpu", "purchase": "on_demand", "size_class": "large"},
    },
    "size_classes": {"small": {"max_box_px": 128, "gpu_memory_gib": 24},
                     "large": {"max_box_px": 512, "gpu_memory_gib": 80}},
    "exit_codes": {"ok": 0, "bad_input": 2, "out_of_memory": 3},
    "jobs": {
        "toy_prepare": {
            "image": "toy-cpu", "queue": "cpu-spot",
            "command": ["foldstack", "step", WORKFLOW, "prepare", "--run-id", "Ref::run_id", "--batch", "Ref::batch"],
            "parameters": {"run_id": "", "batch": ""},
            "resources": {"vcpu": 2, "memory_mib": 4000},
            "timeout_seconds": 600, "retry": {"attempts": 2, "evaluate_on_exit": _EXIT},
        },
        "toy_gpu": {
            "image": "toy-gpu", "queue_by_size_class": {"small": "toy-gpu-small", "large": "toy-gpu-large"},
            "command": ["foldstack", "step", WORKFLOW, "Ref::stage", "--run-id", "Ref::run_id"],
            "parameters": {"run_id": "", "stage": "refine"},
            "size_classes": {"small": {"vcpu": 4, "memory_mib": 16000, "gpus": 1},
                             "large": {"vcpu": 8, "memory_mib": 64000, "gpus": 1}},
            "timeout_seconds": 3600, "retry": {"attempts": 2, "evaluate_on_exit": _EXIT},
        },
    },
}


class ToyRequest(BaseModel):
    """The toy's request: input files, a box size (its size class), an output location."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    upload_fields: ClassVar[tuple[str, ...]] = ("files", "reference")

    files: list[str] = Field(min_length=1)
    reference: str | None = None
    box_size: int = Field(ge=16, le=512)
    label: str = Field(default="toy", pattern=r"^[a-z0-9-]{1,20}$")
    output_uri: str
    schema_version: int = 1

    def run_id(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return f"{self.label}-{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


def write_statemachines(root: Path, *, extra: dict[str, dict[str, Any]] | None = None) -> Path:
    """``<root>/statemachines``: the real fold workflow and workloads entry, plus the toy
    (and `extra` workloads.yaml entries). Returns the folder, for FOLDSTACK_STATEMACHINES_DIR."""
    sm = root / "statemachines"
    sm.mkdir(parents=True, exist_ok=True)
    if not (sm / "fold").exists():
        shutil.copytree(REPO / "statemachines" / "fold", sm / "fold")
    toy = sm / WORKFLOW
    toy.mkdir(exist_ok=True)
    (toy / "jobs.yaml").write_text(yaml.safe_dump(JOBS, sort_keys=False))
    (toy / "knobs.yaml").write_text("schema_version: 1\n")
    registry = {
        "fold": {"submitted_by": "client", "request_model": "foldstack.core.request:RunRequest"},
        WORKFLOW: {"submitted_by": "client", "request_model": REQUEST_MODEL},
        "toy_operator": {"submitted_by": "operator"},
        **(extra or {}),
    }
    (sm / "workloads.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))
    return sm


def write_dataset(folder: Path, *, box_size: int = 64, files: int = 2, **fields: Any) -> Path:
    """A dataset folder as a workload's demo-data writes one: input files under
    ``inputs/`` and ``request.json`` naming that folder relative to itself."""
    data = folder / "inputs"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (data / f"item{i}.dat").write_bytes(f"toy input {i}\n".encode() * 10)
    request = {"files": ["inputs"], "box_size": box_size, **fields}
    (folder / "request.json").write_text(json.dumps(request))
    return folder
