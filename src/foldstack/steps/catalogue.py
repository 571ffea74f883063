"""The catalogue of databases and weights foldstack can fetch: one versioned YAML in the
package (``src/foldstack/data/catalogue/catalogue.yaml``) and its model.

Each entry is a name and version with its files (publisher URL, packing format, exact
size and sha256 when the publisher states them — null with a note otherwise), its role
for foldstack (which step reads it) and where the URL comes from. The refresh workflow
takes ``{"catalogue": "<name>@<version>", ...}`` as a database spec
(:meth:`Catalogue.refresh_spec`, used by
:func:`foldstack.steps.refresh_db_source.parse_spec`); ``foldstack weights fetch`` reads
the weights entries; ``foldstack db catalogue`` lists everything.
"""

from __future__ import annotations

import posixpath
import re
from functools import lru_cache
from importlib.resources import files
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from foldstack.steps.databases import ROLES, check_name, check_version

CATALOGUE_FILE = "catalogue.yaml"
#: database roles (their one home: foldstack.steps.databases.ROLES): FASTA roles are
#: searched by jackhmmer or MMseqs2 and MMseqs2-indexed when published; HH-suite roles name
#: their ffindex prefix (``hhsuite_db``); pdb_mmcif is the template database.
SEQUENCE_ROLES = ("uniref90", "mgnify", "small_bfd", "uniprot", "colabfold_uniref30", "colabfold_envdb")
HHSUITE_ROLES = ("bfd", "uniref30", "pdb70")
TEMPLATE_ROLE = "pdb_mmcif"
#: roles ColabFold's prebuilt expandable profile databases can serve instead of a FASTA
#: (manifest ``mmseqs_db``: the MMseqs2 DB prefix, e.g. ``uniref30_2302_db``, with its
#: ``_seq``/``_aln`` companions; searched by :mod:`foldstack.steps.mmseqs_profile`)
PROFILE_ROLES = ("colabfold_uniref30", "colabfold_envdb")


def check_role(role: str | None) -> str | None:
    """`role` if foldstack knows it (:data:`foldstack.steps.databases.ROLES`), else ValueError."""
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    return role


def check_role_fields(where: str, role: str | None, sequences: str | None, seqres: str | None,
                      mmcif_dir: str | None, hhsuite_db: str | None, mmseqs_db: str | None = None) -> None:
    """What each kind of role needs its manifest to name."""
    if mmseqs_db and role not in PROFILE_ROLES:
        raise ValueError(f"{where}: `mmseqs_db` (a prebuilt MMseqs2 profile database) can serve only "
                         f"{', '.join(PROFILE_ROLES)}, not role {role!r}")
    if role in SEQUENCE_ROLES and not sequences and not (role in PROFILE_ROLES and mmseqs_db):
        raise ValueError(f"{where}: role {role!r} needs `sequences` (the FASTA file)"
                         + (" or `mmseqs_db` (ColabFold's prebuilt profile database)" if role in PROFILE_ROLES else ""))
    if role in HHSUITE_ROLES and not hhsuite_db:
        raise ValueError(f"{where}: role {role!r} needs `hhsuite_db` (the HH-suite ffindex prefix)")
    if role == TEMPLATE_ROLE and not (seqres and mmcif_dir):
        raise ValueError(f"{where}: a template database (pdb_mmcif) needs `seqres` and `mmcif_dir`")
#: how a file is packed; the refresh step unpacks every format but raw
ARCHIVE_FORMATS = ("tar", "tar.gz", "tar.zst", "gz", "zst")
FORMATS = ("raw", *ARCHIVE_FORMATS)
_SHA = re.compile(r"^[0-9a-f]{64}$")


class CatalogueFile(BaseModel):
    """One file of an entry, as its publisher serves it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    format: Literal["raw", "gz", "zst", "tar", "tar.gz", "tar.zst"]
    bytes: int | None = Field(default=None, gt=0)  # exact size, only when published
    sha256: str | None = None  # only when published
    note: str | None = None  # required when bytes or sha256 is null: why

    @field_validator("url")
    @classmethod
    def _https(cls, v: str) -> str:
        if not re.match(r"^https://[A-Za-z0-9.-]+/\S+$", v):
            raise ValueError(f"url {v!r} must be an https:// URL of a file")
        return v

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is not None and not _SHA.match(v):
            raise ValueError(f"sha256 {v!r} must be 64 lower-case hex digits")
        return v

    @model_validator(mode="after")
    def _say_why(self) -> CatalogueFile:
        if (self.bytes is None or self.sha256 is None) and not (self.note and self.note.strip()):
            raise ValueError(f"{self.url}: a null size or sha256 needs a note saying why (not published)")
        return self

    @property
    def name(self) -> str:
        return posixpath.basename(self.url)


class CatalogueEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    kind: Literal["database", "weights"]
    suite: Literal["alphafold", "colabfold", "esmfold"]
    description: str
    license: str
    source_doc: str  # the publisher's script or page that names the URLs
    files: list[CatalogueFile] = Field(min_length=1)
    role: str | None = None
    sequences: str | None = None
    seqres: str | None = None
    mmcif_dir: str | None = None
    hhsuite_db: str | None = None
    mmseqs_db: str | None = None  # ColabFold's prebuilt profile DB: its MMseqs2 prefix once unpacked
    max_template_date: str | None = None
    max_hits: int | None = Field(default=None, gt=0)
    moving: bool = False  # the URL serves the newest release: contents change over time
    approx_size: str | None = None  # the publisher's rounded figure, e.g. "34 GB download"
    engine: Literal["alphafold2", "esmfold"] | None = None  # weights: which engine
    hub_repo: str | None = None  # weights on the Hugging Face hub

    _check_name = field_validator("name")(check_name)
    _check_version = field_validator("version")(check_version)
    _check_role = field_validator("role")(check_role)

    @model_validator(mode="after")
    def _consistent(self) -> CatalogueEntry:
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.ref}: two files share a name")
        if self.kind == "weights" and (self.engine is None or self.role is not None):
            raise ValueError(f"{self.ref}: weights name their engine and have no role")
        check_role_fields(self.ref, self.role, self.sequences, self.seqres, self.mmcif_dir, self.hhsuite_db,
                          self.mmseqs_db)
        return self

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    entries: list[CatalogueEntry]

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        refs = [e.ref for e in self.entries]
        dupes = sorted({r for r in refs if refs.count(r) > 1})
        if dupes:
            raise ValueError(f"catalogue lists {dupes} more than once")
        return self

    def get(self, ref: str) -> CatalogueEntry:
        """``name@version``; ``name`` alone when the catalogue has one version of it."""
        name, _, version = ref.partition("@")
        found = [e for e in self.entries if e.name == name and (not version or e.version == version)]
        if len(found) != 1:
            known = ", ".join(e.ref for e in self.entries if e.name == name) or "none"
            what = "is ambiguous" if found else "is not in the catalogue"
            raise KeyError(f"{ref!r} {what} (versions of {name!r}: {known})")
        return found[0]

    def refresh_spec(self, ref: str) -> dict[str, Any]:
        """The refresh workflow's spec for a database entry (see
        :class:`foldstack.steps.refresh_db_source.DatabaseSpec`): files with the published
        digests (null ones need ``trust_on_first_use`` from the request), unpacked,
        indexed by MMseqs2 when the role is a sequence role (a prebuilt profile database,
        ``mmseqs_db``, gets ``createindex`` as ColabFold's setup_databases.sh runs it)."""
        entry = self.get(ref)
        if entry.kind != "database":
            raise KeyError(f"{ref!r} is {entry.kind}: install it with `foldstack weights fetch {entry.engine}`")
        source = posixpath.dirname(entry.files[0].url)
        spec: dict[str, Any] = {
            "name": entry.name, "version": entry.version, "source": source,
            "files": {f.name: f.sha256 for f in entry.files},
            "unpack": any(f.format != "raw" for f in entry.files),
            "license": entry.license, "description": entry.description, "catalogue": entry.ref,
        }
        others = {f.name: f.url for f in entry.files if posixpath.dirname(f.url) != source}
        if others:
            spec["file_sources"] = others
        for key in ("role", "sequences", "seqres", "mmcif_dir", "hhsuite_db", "mmseqs_db", "max_template_date",
                    "max_hits"):
            value = getattr(entry, key)
            if value is not None:
                spec[key] = value
        return spec


@lru_cache(maxsize=1)
def load_catalogue() -> Catalogue:
    import yaml

    text = (files("foldstack") / "data" / "catalogue" / CATALOGUE_FILE).read_text(encoding="utf-8")
    return Catalogue.model_validate(yaml.safe_load(text))
