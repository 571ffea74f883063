"""``manifest.json`` of a published cryoem run: what was computed, from what, and every
published file with its sha256 and size. Written last (the publish's marker), so a reader
that finds it finds every file it lists."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
#: The files every published run holds (the brief of a cryoem result): the maps, the mask,
#: the FSC curve and plot, the particles, per-micrograph QC and the report page.
REQUIRED_FILES = ("map_sharpened.mrc", "half_map_1.mrc", "half_map_2.mrc", "mask.mrc", "fsc.tsv", "fsc.png",
                  "particles_refined.star", "qc.json", "report.html")


class FileRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, Field(ge=0)]


class Results(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    resolution: float  # Å, FSC 0.143 between the masked half maps
    bfactor: float
    gold_standard_resolution_refine: float
    particles_refined: int
    particles_curated: int
    micrographs: int
    micrographs_kept: int


class CryoemManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = SCHEMA_VERSION
    workflow: Literal["cryoem"] = "cryoem"
    run_id: str
    outcome: Literal["succeeded"] = "succeeded"
    created_at: str
    request: dict[str, Any]  # as submitted (CryoemRunRequest)
    relion_version: str
    initial_model: str  # "denovo" or "reference"
    results: Results
    bias_guard: dict[str, Any] | None
    micrographs: list[dict[str, Any]]
    stages: dict[str, dict[str, Any]]
    cpu_seconds: float
    size_class: str | None = None  # the GPU stages' class as Validate Input chose it
    # estimated dollar cost (foldstack.cryoem.costs): the run's section; each stage's under stages[...]["cost"]
    cost: dict[str, Any] | None = None
    files: dict[str, FileRecord]

    @model_validator(mode="after")
    def _complete(self) -> CryoemManifest:
        missing = [f for f in REQUIRED_FILES if f not in self.files]
        if missing:
            raise ValueError(f"manifest lists no {', '.join(missing)}")
        return self


def load_manifest(text: str | bytes) -> CryoemManifest:
    return CryoemManifest.model_validate(json.loads(text))
