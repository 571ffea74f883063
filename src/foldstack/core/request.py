"""The run request: what a scientist asks for, as one versioned, validated model."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Engine = Literal["alphafold2", "esmfold"]
Preset = Literal["monomer", "multimer"]
MsaTool = Literal["jackhmmer", "mmseqs2"]
SCHEMA_VERSION = 1
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_TAG_KEY = re.compile(r"^[A-Za-z0-9_.:/=+@-]{1,128}$")


class InlineRecord(BaseModel):
    """A sequence given directly instead of a FASTA file (chains joined by ':')."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    sequence: str


class RunRequest(BaseModel):
    """One run: inputs, where results go, and how to fold. JSON on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    inputs: tuple[str | InlineRecord, ...] = Field(min_length=1, max_length=1000)
    output_uri: str
    engine: Engine = "alphafold2"
    preset: Preset = "monomer"
    msa_tool: MsaTool | None = None  # alphafold2 defaults to jackhmmer; esmfold takes none
    reuse_msa: bool = True
    owner: str | None = None
    tags: dict[str, str] = Field(default_factory=dict, max_length=50)

    @field_validator("owner")
    @classmethod
    def _owner(cls, v: str | None) -> str | None:
        if v is not None and not _OWNER.fullmatch(v):
            raise ValueError("owner must be 1-64 of letters, digits, '_', '.', '@', '-'")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not _TAG_KEY.fullmatch(key) or len(value) > 256:
                raise ValueError(f"tag {key!r}: keys are 1-128 safe characters, values at most 256")
        return v

    @model_validator(mode="before")
    @classmethod
    def _engine_defaults(cls, data: object) -> object:
        if isinstance(data, dict):
            engine = data.get("engine", "alphafold2")
            if engine == "esmfold" and data.get("msa_tool") is not None:
                raise ValueError("esmfold is single-sequence: it takes no msa_tool")
            if engine == "alphafold2" and data.get("msa_tool") is None:
                data = {**data, "msa_tool": "jackhmmer"}
        return data

    @property
    def needs_msa(self) -> bool:
        return self.engine == "alphafold2"
