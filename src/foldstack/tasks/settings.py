"""Environment configuration of the Lambda tasks, parsed once into a model."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foldstack.core.errors import ConfigurationError
from foldstack.core.fasta import FastaLimits
from foldstack.core.targets import SizeClass

PREFIX = "FOLDSTACK_"


class TaskSettings(BaseModel):
    """What the tasks need to know about their environment (all from env vars).

    FOLDSTACK_SCRATCH_ROOT              s3://scratch-bucket or a local directory
    FOLDSTACK_ALLOWED_INPUT_PREFIXES    comma-separated URIs inputs must lie under
    FOLDSTACK_ALLOWED_OUTPUT_PREFIXES   comma-separated URIs outputs must lie under
    FOLDSTACK_SIZE_CLASSES              JSON: jobs.yaml `size_classes`
    FOLDSTACK_CACHE_ROOT                optional cache root: fold's MSA cache, cryoem's
                                        per-micrograph preprocessing cache
    FOLDSTACK_DB_ROOT                   optional database root (s3://... or a directory) holding
                                        <name>/CURRENT: the MSA cache keys on those versions
    FOLDSTACK_LIMITS                    optional JSON overriding FastaLimits
    FOLDSTACK_SCRATCH_OWNER             optional uid:gid the Batch jobs run as; staged S3
                                        objects carry it as FSx POSIX metadata
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    scratch_root: str
    allowed_input_prefixes: tuple[str, ...] = Field(min_length=1)
    allowed_output_prefixes: tuple[str, ...] = Field(min_length=1)
    size_classes: dict[str, SizeClass] = Field(min_length=1)
    cache_root: str | None = None
    db_root: str | None = None
    limits: FastaLimits = FastaLimits()
    scratch_owner: tuple[int, int] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TaskSettings:
        env = os.environ if environ is None else environ

        def csv(name: str) -> tuple[str, ...]:
            return tuple(p.strip() for p in env.get(PREFIX + name, "").split(",") if p.strip())

        missing = [
            PREFIX + n
            for n in ("SCRATCH_ROOT", "ALLOWED_INPUT_PREFIXES", "ALLOWED_OUTPUT_PREFIXES", "SIZE_CLASSES")
            if not env.get(PREFIX + n)
        ]
        if missing:
            raise ConfigurationError(f"missing environment variables: {', '.join(missing)}")
        try:
            return cls(
                scratch_root=env[PREFIX + "SCRATCH_ROOT"],
                allowed_input_prefixes=csv("ALLOWED_INPUT_PREFIXES"),
                allowed_output_prefixes=csv("ALLOWED_OUTPUT_PREFIXES"),
                size_classes=json.loads(env[PREFIX + "SIZE_CLASSES"]),
                cache_root=env.get(PREFIX + "CACHE_ROOT") or None,
                db_root=env.get(PREFIX + "DB_ROOT") or None,
                limits=FastaLimits(**json.loads(env.get(PREFIX + "LIMITS") or "{}")),
                scratch_owner=_owner(env.get(PREFIX + "SCRATCH_OWNER")),
            )
        except (ValidationError, json.JSONDecodeError, ValueError) as exc:
            raise ConfigurationError(f"invalid foldstack task configuration: {exc}") from None


def _owner(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    uid, sep, gid = value.partition(":")
    if not sep or not uid.isdigit() or not gid.isdigit() or int(uid) == 0:
        raise ValueError(f"FOLDSTACK_SCRATCH_OWNER must be a non-root uid:gid, got {value!r}")
    return int(uid), int(gid)
