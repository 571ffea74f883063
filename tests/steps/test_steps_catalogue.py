"""The catalogue of databases and weights: every entry well-formed, every database entry a
valid refresh spec, and the weights fetcher reading its URLs from it."""

from __future__ import annotations

import re

import pytest
import yaml

from foldstack.steps.catalogue import FORMATS, CatalogueEntry, CatalogueFile, load_catalogue


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def test_every_entry_is_well_formed(catalogue):
    assert len(catalogue.entries) >= 15
    for entry in catalogue.entries:
        assert entry.description and entry.license and entry.source_doc.startswith("https://"), entry.ref
        for f in entry.files:
            assert re.match(r"^https://[^/\s]+/\S+$", f.url), f.url
            assert f.format in FORMATS, f.url
            assert (f.bytes is not None and f.bytes > 0) or (f.note and f.note.strip()), f.url
            assert (f.sha256 is not None and re.fullmatch(r"[0-9a-f]{64}", f.sha256)) or \
                (f.note and f.note.strip()), f.url


def test_catalogue_covers_alphafold_colabfold_and_weights(catalogue):
    refs = {e.ref for e in catalogue.entries}
    for ref in ("uniref90@2022_05", "mgnify@2022_05", "bfd@casp14", "small_bfd@alphafold-reduced-dbs",
                "uniref30@2021_03", "pdb70@2020_04_01", "pdb_mmcif@2022_09_28", "pdb_seqres@current",
                "uniprot@2021_04", "colabfold_uniref30@2023_02", "colabfold_envdb@2021_08",
                "alphafold2_params@2022-12-06", "esmfold_v1@main"):
        assert ref in refs
    formats = {f.format for e in catalogue.entries for f in e.files}
    assert {"gz", "tar.gz", "tar", "zst", "tar.zst"} <= formats
    assert any(e.moving for e in catalogue.entries)


def test_every_database_entry_is_a_refresh_spec(catalogue):
    from foldstack.core.errors import BadInputError
    from foldstack.steps.refresh_db_source import parse_spec, source_uri

    for entry in catalogue.entries:
        if entry.kind != "database":
            with pytest.raises(BadInputError, match="weights fetch"):
                parse_spec({"catalogue": entry.ref})
            continue
        unknown = any(f.sha256 is None for f in entry.files)
        if unknown:  # no published checksum: refused unless the request accepts trust on first use
            with pytest.raises(BadInputError, match="trust_on_first_use"):
                parse_spec({"catalogue": entry.ref})
        spec = parse_spec({"catalogue": entry.ref, "trust_on_first_use": True})
        assert (spec.name, spec.version, spec.catalogue) == (entry.name, entry.version, entry.ref)
        assert sorted(source_uri(spec, rel) for rel in spec.files or {}) == sorted(f.url for f in entry.files)
        assert spec.unpack == any(f.format != "raw" for f in entry.files)
        assert spec.build_index == (entry.role in ("uniref90", "mgnify", "small_bfd", "uniprot",
                                                   "colabfold_uniref30", "colabfold_envdb"))


def test_bad_entries_are_rejected():
    ok = {"url": "https://example.org/x.fasta.gz", "format": "gz", "bytes": 10, "sha256": "a" * 64}
    CatalogueFile.model_validate(ok)
    for bad in ({"url": "http://example.org/x.gz"}, {"url": "ftp://example.org/x.gz"}, {"format": "rar"},
                {"bytes": 0}, {"sha256": "ABC"}, {"sha256": None}, {"bytes": None}):
        with pytest.raises(ValueError):
            CatalogueFile.model_validate({**ok, **bad})
    CatalogueFile.model_validate({**ok, "sha256": None, "bytes": None, "note": "not published"})
    entry = {"name": "x", "version": "1", "kind": "database", "suite": "alphafold", "description": "d",
             "license": "l", "source_doc": "https://example.org", "files": [ok]}
    CatalogueEntry.model_validate(entry)
    for bad in ({"role": "uniref90"}, {"role": "nonsense"}, {"role": "pdb_mmcif", "seqres": "s"},
                {"kind": "weights"}, {"files": []}):
        with pytest.raises(ValueError):
            CatalogueEntry.model_validate({**entry, **bad})


def test_catalogue_file_is_plain_yaml_with_unique_refs():
    from importlib.resources import files

    data = yaml.safe_load((files("foldstack") / "data" / "catalogue" / "catalogue.yaml").read_text())
    refs = [f"{e['name']}@{e['version']}" for e in data["entries"]]
    assert data["schema_version"] == 1 and len(refs) == len(set(refs))


def test_weights_fetch_reads_the_catalogue(catalogue):
    from foldstack.weights import fetch

    assert catalogue.get("alphafold2_params").files[0].url == fetch.AF2_PARAMS_URL
    assert fetch.ESMFOLD_REPO == catalogue.get("esmfold_v1").hub_repo == "facebook/esmfold_v1"
