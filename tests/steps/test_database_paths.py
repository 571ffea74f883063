"""A database manifest's paths stay inside its version folder: the searches open databases
without re-verifying them, so `Database` itself refuses a manifest path that escapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from foldstack.core.errors import BadInputError
from foldstack.steps.databases import Database


def _db(tmp_path: Path, **manifest) -> Database:
    return Database(name="uniref30", version="v1", path=tmp_path / "uniref30" / "v1",
                    manifest={"sequences": "uniref30.fasta", **manifest}, manifest_sha256="0" * 64)


@pytest.mark.parametrize("field,value", [
    ("sequences", "../v0/uniref30.fasta"), ("sequences", "/etc/passwd"),
    ("mmseqs_db", "../../other/uniref30_db"), ("mmseqs_db", ".."),
    ("hhsuite_db", "/abs/bfd"), ("hhsuite_db", "a/../../b"),
])
def test_a_manifest_path_outside_the_version_folder_is_bad_input(tmp_path, field, value):
    db = _db(tmp_path, **{field: value})
    attribute = {"sequences": "sequences", "mmseqs_db": "mmseqs_db", "hhsuite_db": "hhsuite_prefix"}[field]
    with pytest.raises(BadInputError, match="escapes"):
        getattr(db, attribute)


def test_paths_inside_the_version_folder_resolve_under_it(tmp_path):
    db = _db(tmp_path, mmseqs_db="db/uniref30_db", hhsuite_db="hh/bfd")
    assert db.sequences == db.path / "uniref30.fasta"
    assert db.mmseqs_db == db.path / "db" / "uniref30_db"
    assert db.hhsuite_prefix == db.path / "hh" / "bfd"
