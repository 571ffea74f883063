"""The run request: what a scientist asks for, as one versioned, validated model."""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Engine = Literal["alphafold2", "esmfold"]
Preset = Literal["monomer", "multimer"]
MsaTool = Literal["jackhmmer", "mmseqs2"]
# Which databases the MSA step searches, and how (foldstack.steps.databases.PRESETS):
# AlphaFold's full_dbs / reduced_dbs, ColabFold's colabfold_search.
DbPreset = Literal["full_dbs", "reduced_dbs", "colabfold"]
DEFAULT_DB_PRESET: DbPreset = "reduced_dbs"
# Amber relaxation of the predicted models (foldstack.steps.relax): none, the best model, or all.
Relax = Literal["none", "best", "all"]
RELAX_MODES: tuple[str, ...] = get_args(Relax)
# AlphaFold relaxes the best model by default. ESMFold is chosen for throughput and its
# pipelines do not relax (a CPU relaxation costs more than the fold itself): none.
DEFAULT_RELAX: dict[str, str] = {"alphafold2": "best", "esmfold": "none"}
SCHEMA_VERSION = 1
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_TAG_KEY = re.compile(r"^[A-Za-z0-9_.:/=+@-]{1,128}$")
_DB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_DB_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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
    msa_tool: MsaTool | None = None  # alphafold2 defaults to jackhmmer (mmseqs2 for colabfold); esmfold takes none
    db_preset: DbPreset | None = None  # alphafold2 defaults to reduced_dbs; esmfold takes none
    reuse_msa: bool = True
    # MMseqs2 on a GPU: the run's chain search phase runs on jobs.yaml's msa_gpu job (a GPU queue,
    # FOLDSTACK_MMSEQS_GPU=1); msa_tool mmseqs2 only. Not in the run id: the same search, faster.
    msa_gpu: bool = False
    owner: str | None = None
    tags: dict[str, str] = Field(default_factory=dict, max_length=50)
    # Database versions this run searches instead of each database's CURRENT (`--db NAME=VERSION`);
    # the msa step reads them from the staged request.json (foldstack.steps.databases.pinned_versions).
    db_versions: dict[str, str] = Field(default_factory=dict, max_length=32)
    # AlphaFold2: how many of the preset's models run (default all 5) and predictions per model
    # (default 1 for monomer, 5 for multimer: AlphaFold's num_multimer_predictions_per_model).
    num_models: int | None = Field(default=None, ge=1, le=5)
    num_seeds: int | None = Field(default=None, ge=1, le=20)
    # Failure budget: the fraction of targets that may fail while the run still SUCCEEDS (with
    # outcome "partial"); more fail and the run FAILS (what succeeded is still published).
    # None: knobs.yaml failure_budget.max_failed_fraction.
    max_failed_fraction: float | None = Field(default=None, ge=0, le=1)
    # Amber relaxation (relaxed_<i>.pdb/.cif): unset means the engine's DEFAULT_RELAX.
    relax: Relax | None = None
    # The run this request computes again (`foldstack rerun`): its run id, with `.<n>` for the
    # n-th rerun of it (n >= 2). It counts in the run id (foldstack.core.runid), so a rerun is a
    # run of its own, with its own results: never the ones it is compared against.
    rerun_of: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,80}(\.[1-9][0-9]{0,3})?$")

    @field_validator("db_versions")
    @classmethod
    def _db_versions(cls, v: dict[str, str]) -> dict[str, str]:
        for name, version in v.items():
            if not _DB_NAME.fullmatch(name) or not _DB_VERSION.fullmatch(version):
                raise ValueError(f"db_versions {name!r}={version!r}: names are 1-64 of [A-Za-z0-9_-], "
                                 "versions 1-64 of [A-Za-z0-9._-], each starting alphanumeric")
        return dict(sorted(v.items()))

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
            if engine == "esmfold" and (data.get("msa_tool") is not None or data.get("db_preset") is not None):
                raise ValueError("esmfold is single-sequence: it takes no msa_tool or db_preset")
            if engine == "alphafold2":
                preset, tool = data.get("db_preset"), data.get("msa_tool")
                if preset == "colabfold" and tool not in (None, "mmseqs2"):
                    raise ValueError("db_preset colabfold searches with MMseqs2 (colabfold_search): "
                                     "leave msa_tool unset or set it to mmseqs2")
                if tool is None:
                    tool = "mmseqs2" if preset == "colabfold" else "jackhmmer"
                data = {**data, "msa_tool": tool, "db_preset": preset or DEFAULT_DB_PRESET}
            if data.get("relax") is None and engine in DEFAULT_RELAX:
                data = {**data, "relax": DEFAULT_RELAX[engine]}
        return data

    @model_validator(mode="after")
    def _alphafold2_only(self) -> RunRequest:
        if self.engine == "esmfold" and (self.db_versions or self.num_models or self.num_seeds):
            raise ValueError("esmfold searches no database and runs one model: db_versions, num_models "
                             "and num_seeds are alphafold2 options")
        if self.msa_gpu and self.msa_tool != "mmseqs2":
            raise ValueError("msa_gpu searches with MMseqs2 on a GPU: set msa_tool mmseqs2 (or db_preset colabfold)")
        return self

    @property
    def needs_msa(self) -> bool:
        return self.engine == "alphafold2"
