"""The toy's request: input files (local paths or ``s3://`` URIs, files or folders) and
where the results go. ``upload_fields`` names the fields the client uploads; ``run_id()``
is the deterministic run id the client names the execution by and Validate Input checks."""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_FILES = 100  # the Work Map's items: bounded, like every Map


class ToyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    upload_fields: ClassVar[tuple[str, ...]] = ("files",)

    files: list[str] = Field(min_length=1, max_length=MAX_FILES)
    output_uri: str
    label: str = Field(default="toy", pattern=r"^[a-z0-9-]{1,20}$")
    owner: str | None = None
    tags: dict[str, str] | None = None
    schema_version: Literal[1] = 1

    def run_id(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return f"{self.label}-{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"
