"""The manifest model: what Collect Outputs writes and every reader loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foldstack import __version__
from foldstack.core.manifest import (
    SCHEMA_VERSION,
    Manifest,
    ManifestError,
    ManifestVersionError,
    load_manifest,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "manifests"
# Written by foldstack 0.1.0 before the model existed (an AlphaFold2 monomer run of the
# local engine), kept byte for byte: today's reader must still load it.
PREVIOUS = FIXTURES / "schema1-foldstack-0.1.0-alphafold2.json"


def _previous() -> dict:
    return json.loads(PREVIOUS.read_text())


def test_a_manifest_written_by_the_previous_version_loads():
    manifest = load_manifest(PREVIOUS.read_bytes())
    raw = _previous()
    assert manifest.run_id == raw["run_id"] and manifest.request.engine == "alphafold2"
    target = manifest.targets[0]
    assert target.id == raw["targets"][0]["id"]
    assert target.files["ranked_0.pdb"].sha256 == raw["targets"][0]["files"]["ranked_0.pdb"]["sha256"]
    assert target.provenance["msa"].msa_cache == raw["targets"][0]["provenance"]["msa"]["msa_cache"]
    assert target.demo_weights is True and target.mean_plddt == raw["targets"][0]["metrics"]["mean_plddt"]


def test_round_trip_keeps_every_key_as_written():
    raw = _previous()
    again = Manifest.model_validate(raw).to_dict()
    # The request is re-validated by today's RunRequest, which may add fields it now
    # defaults (e.g. a database preset); every key the old writer wrote is kept as written.
    request, old_request = again.pop("request"), raw.pop("request")
    assert again == raw
    assert {k: request[k] for k in old_request} == old_request


def test_keys_added_by_a_newer_writer_are_kept():
    raw = _previous()
    raw["report"] = {"html": "index.html"}
    raw["targets"][0]["ranking"] = [0]
    again = load_manifest(json.dumps(raw))
    assert again.to_dict()["report"] == {"html": "index.html"}
    assert again.to_dict()["targets"][0]["ranking"] == [0]


@pytest.mark.parametrize("version", [2, 99, None, "1"])
def test_an_unknown_schema_names_both_versions(version):
    raw = _previous()
    raw["schema_version"] = version
    raw["foldstack_version"] = "9.9.9"
    with pytest.raises(ManifestVersionError) as err:
        load_manifest(json.dumps(raw), source="s3://b/run/manifest.json")
    text = str(err.value)
    assert "[manifest_version]" in text and "s3://b/run/manifest.json" in text
    assert "written by foldstack 9.9.9" in text and f"this is foldstack {__version__}" in text


@pytest.mark.parametrize("data, expected", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a manifest"),
    (json.dumps({"schema_version": SCHEMA_VERSION}).encode(), "run_id"),
])
def test_a_broken_manifest_is_a_coded_one_line_error(data, expected):
    with pytest.raises(ManifestError) as err:
        load_manifest(data)
    assert "[manifest_invalid]" in str(err.value) and expected in str(err.value)
    assert "\n" not in str(err.value)


def test_a_bad_checksum_in_files_is_rejected():
    raw = _previous()
    raw["targets"][0]["files"]["ranked_0.pdb"]["sha256"] = "not-a-sha"
    with pytest.raises(ManifestError, match=r"targets\.0\.files\.ranked_0\.pdb\.sha256"):
        load_manifest(json.dumps(raw))
