"""`doctor`'s fsx-import failing paths (botocore Stubber on a real AwsApi, so requests are
checked against the FSx API model) and the database checks against the catalogue and the
presets (db-presets, db-catalogue)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from foldstack.client.aws import AwsApi
from foldstack.client.config import ClientConfig
from foldstack.client.doctor import Doctor
from foldstack.client.doctor_catalogue import InstalledDatabase, catalogue_check, preset_check
from foldstack.steps.catalogue import load_catalogue

REGION, ACCOUNT = "eu-west-1", "123456789012"
DB_URI = "s3://fs-db/db"
FS_A, FS_B = "fs-0aaaaaaaaaaaaaaaa", "fs-0bbbbbbbbbbbbbbbb"
TAGS = [{"Key": "Project", "Value": "foldstack"}, {"Key": "Environment", "Value": "dev"},
        {"Key": "Role", "Value": "database"}]


def _doctor(env: str = "dev") -> Doctor:
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name=REGION)
    config = ClientConfig(
        env=env, state_machine_arn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:foldstack-{env}-fold",
        input_prefix="s3://in/uploads", allowed_input_prefixes=("s3://in/uploads",), output_prefix="s3://out/runs",
        scratch_bucket="scratch", region=REGION, log_group_batch="/aws/batch/job", queues={},
        msa_cache_uri="s3://scratch/cache", db_uri=DB_URI)
    return Doctor(AwsApi(session=session, region=REGION), config)


def _fs(fs_id: str, lifecycle: str = "AVAILABLE", tags=TAGS) -> dict:
    return {"FileSystemId": fs_id, "Lifecycle": lifecycle, "FileSystemType": "LUSTRE", "Tags": tags}


def _dra(path: str = DB_URI, lifecycle: str = "AVAILABLE", events=("NEW", "CHANGED", "DELETED")) -> dict:
    return {"AssociationId": "dra-0123456789abcdef0", "Lifecycle": lifecycle, "DataRepositoryPath": path,
            "FileSystemPath": "/db", "S3": {"AutoImportPolicy": {"Events": list(events)}}}


def _fsx_import(systems: list[dict], associations: list[list[dict]], env: str = "dev"):
    doctor = _doctor(env)
    stub = Stubber(doctor.api.client("fsx"))
    stub.add_response("describe_file_systems", {"FileSystems": systems})
    for dras in associations:
        stub.add_response("describe_data_repository_associations", {"Associations": dras})
    with stub:
        [check] = doctor.fsx_import()
    stub.assert_no_pending_responses()
    return check


def test_fsx_import_passes_when_every_database_fs_imports_db_uri_automatically():
    other_env = [dict(t, Value="prod") if t["Key"] == "Environment" else t for t in TAGS]
    check = _fsx_import([_fs(FS_A), _fs(FS_B), _fs("fs-0cccccccccccccccc", tags=other_env)],
                        [[_dra()], [_dra(DB_URI + "/")]])
    assert check.status == "pass" and "2 database file systems import s3://fs-db/db/" in check.detail


def test_fsx_import_fails_without_a_database_file_system_of_this_env():
    other_env = [dict(t, Value="prod") if t["Key"] == "Environment" else t for t in TAGS]
    scratch = [dict(t, Value="scratch") if t["Key"] == "Role" else t for t in TAGS]
    check = _fsx_import([_fs("fs-0cccccccccccccccc", tags=other_env), _fs("fs-0dddddddddddddddd", tags=scratch)], [])
    assert check.status == "fail" and "no database FSx file system tagged Environment=dev" in check.detail
    assert "`make plan ENV=dev` then `make apply ENV=dev`" in check.fix


def test_fsx_import_fails_for_a_file_system_that_is_not_available():
    check = _fsx_import([_fs(FS_A, lifecycle="CREATING"), _fs(FS_B)], [[_dra()]])
    assert check.status == "fail" and f"{FS_A} is CREATING" in check.detail and FS_B not in check.detail
    assert "aws fsx describe-data-repository-associations" in check.fix


@pytest.mark.parametrize(("dra", "why"), [
    (_dra("s3://fs-db/other"), "s3://fs-db/other AVAILABLE"),
    (_dra(lifecycle="MISCONFIGURED"), "s3://fs-db/db MISCONFIGURED"),
    (_dra(events=("NEW",)), "s3://fs-db/db AVAILABLE"),  # changed objects would never import
    (_dra(events=()), "s3://fs-db/db AVAILABLE"),
])
def test_fsx_import_fails_without_an_available_auto_import_association_from_db_uri(dra, why):
    check = _fsx_import([_fs(FS_A)], [[dra]])
    assert check.status == "fail"
    assert f"{FS_A}: no AVAILABLE auto-import association from s3://fs-db/db/" in check.detail and why in check.detail


def test_fsx_import_fails_when_a_file_system_has_no_association():
    check = _fsx_import([_fs(FS_A)], [[]])
    assert check.status == "fail" and "(associations: none)" in check.detail


def test_fsx_import_hint_for_prod_names_the_deploy_workflow_not_make_apply():
    prod_tags = [dict(t, Value="prod") if t["Key"] == "Environment" else t for t in TAGS]
    none = _fsx_import([], [], env="prod")
    broken = _fsx_import([_fs(FS_A, tags=prod_tags)], [[_dra(lifecycle="FAILED")]], env="prod")
    for check in (none, broken):
        assert check.status == "fail" and "make apply" not in check.fix and "deploy.yml" in check.fix


# ------------------------------------------------------------------ presets and catalogue


def _db(name: str, version: str, roles, **manifest) -> InstalledDatabase:
    roles = [roles] if isinstance(roles, str) else roles
    return InstalledDatabase(name, version, {"name": name, "version": version, "role": roles[0], "roles": roles,
                                             **manifest})


def _fasta(name: str, version: str, *roles: str, **extra) -> InstalledDatabase:
    return _db(name, version, list(roles), sequences=f"{name}.fasta", **extra)


REDUCED = [_fasta("uniref90", "2022_05", "uniref90"), _fasta("mgnify", "2022_05", "mgnify"),
           _fasta("small_bfd", "alphafold-reduced-dbs", "small_bfd")]


def test_presets_report_what_each_one_lacks_and_name_catalogue_entries():
    check = preset_check([_fasta("uniref90", "2022_05", "uniref90")])
    assert check.status == "fail" and check.detail.startswith("no database preset can run")
    assert "reduced_dbs: missing small_bfd, mgnify" in check.detail
    assert "full_dbs: missing bfd, uniref30, mgnify" in check.detail
    assert "colabfold: missing colabfold_uniref30, colabfold_envdb" in check.detail
    # the default preset's missing roles, as catalogue refresh specs
    assert '{"catalogue": "mgnify@2022_05"}' in check.fix and '{"catalogue": "small_bfd@alphafold-reduced-dbs"}' \
        in check.fix and "foldstack db catalogue" in check.fix


def test_the_default_preset_ready_passes_and_says_templates_and_pairing_are_off():
    check = preset_check(REDUCED)
    assert check.status == "pass" and check.fix == ""
    assert "reduced_dbs: ready, templates off (no pdb70+pdb_mmcif or pdb_mmcif), multimer pairing off (no uniprot)" \
        in check.detail
    with_templates = preset_check([*REDUCED, _db("pdb_mmcif", "2022_09_28", "pdb_mmcif", seqres="pdb_seqres.txt",
                                                 mmcif_dir="mmcif_files")])
    assert "reduced_dbs: ready, templates hmmsearch on pdb_mmcif" in with_templates.detail


def test_another_preset_ready_is_a_warning_naming_it():
    check = preset_check([_fasta("cf_uniref", "1", "colabfold_uniref30"), _fasta("cf_env", "1", "colabfold_envdb")])
    assert check.status == "warn" and "colabfold: ready" in check.detail
    assert "requests must name db_preset colabfold" in check.detail
    # no catalogue entry serves a FASTA role... except the AlphaFold ones: they are named
    assert '{"catalogue": "uniref90@2022_05"}' in check.fix


def test_a_role_declared_without_what_it_needs_does_not_serve_it():
    """An HH-suite role needs hhsuite_db; a FASTA role needs sequences (as the msa step)."""
    check = preset_check([*REDUCED, _db("bfd", "casp14", "bfd"), _db("uniref30", "2021_03", "uniref30",
                                                                     hhsuite_db="UniRef30_2021_03")])
    assert "full_dbs: missing bfd (bfd@casp14: role 'bfd' needs `hhsuite_db`" in check.detail
    no_fasta = preset_check([_db("uniref90", "2022_05", "uniref90"), *REDUCED[1:]])
    assert no_fasta.status == "fail" and "reduced_dbs: missing uniref90 (uniref90@2022_05: role 'uniref90' needs " \
        "`sequences`" in no_fasta.detail


def test_nothing_installed_names_every_catalogue_entry_the_default_preset_needs():
    check = preset_check([])
    assert check.status == "fail"
    for entry in ("uniref90@2022_05", "mgnify@2022_05", "small_bfd@alphafold-reduced-dbs"):
        assert f'"{entry}"' in check.fix


def _from_catalogue(ref: str, **overrides) -> InstalledDatabase:
    entry = load_catalogue().get(ref)
    manifest = {"role": entry.role, "sequences": entry.sequences, "catalogue": entry.ref,
                "source_files": {f.name: f.sha256 or "0" * 64 for f in entry.files}, "fetched_at": "2026-11-30"}
    manifest.update(overrides)
    return InstalledDatabase(entry.name, entry.version, manifest)


def test_catalogue_versions_pass_and_moving_entries_say_when_they_were_fetched():
    check = catalogue_check([_from_catalogue("uniref90@2022_05"), _from_catalogue("uniref90@current")])
    assert check.status == "pass", check.detail
    assert "uniref90@2022_05 = uniref90@2022_05" in check.detail
    assert "uniref90@current = uniref90@current, a moving entry (fetched 2026-11-30)" in check.detail


def test_a_version_not_in_the_catalogue_or_from_a_retired_entry_is_a_warning():
    check = catalogue_check([_fasta("demo_uniref", "pyhmmer-seqs-2", "uniref90"),
                             _from_catalogue("mgnify@2022_05", catalogue="mgnify@2019_05")])
    assert check.status == "warn"
    assert "demo_uniref@pyhmmer-seqs-2 is not a catalogue version" in check.detail
    assert "mgnify@2022_05 was made from mgnify@2019_05, which the catalogue no longer lists" in check.detail
    assert "foldstack db catalogue" in check.fix


def test_a_download_digest_other_than_the_catalogues_fails():
    """Today's entries publish no sha256 (recorded on first use); one that does is checked."""
    real = load_catalogue()
    entry = real.get("uniref90@2022_05")
    pinned = entry.model_copy(update={"files": [entry.files[0].model_copy(update={"sha256": "a" * 64})]})
    catalogue = real.model_copy(update={"entries": [pinned if e is entry else e for e in real.entries]})
    name = entry.files[0].name
    good = catalogue_check([_from_catalogue("uniref90@2022_05", source_files={name: "a" * 64})], catalogue)
    assert good.status == "pass", good.detail
    bad = catalogue_check([_from_catalogue("uniref90@2022_05", source_files={name: "f" * 64})], catalogue)
    assert bad.status == "fail" and f"sha256 of {name} differs from uniref90@2022_05" in bad.detail
    unrecorded = catalogue_check([_from_catalogue("uniref90@2022_05", source_files={})], catalogue)
    assert unrecorded.status == "warn" and f"records no download digest of {name}" in unrecorded.detail


def test_a_catalogue_name_and_version_not_made_by_the_refresh_workflow_is_a_warning():
    by_hand = _fasta("uniref90", "2022_05", "uniref90")  # no `catalogue` in its manifest
    check = catalogue_check([by_hand])
    assert check.status == "warn" and "was not made from it by the refresh workflow" in check.detail


def test_doctor_runs_the_preset_and_catalogue_checks_on_what_databases_read(deployed_plain):
    client = deployed_plain.client()
    s3 = boto3.client("s3", region_name=client.config.region)
    doctor = Doctor(client.api, client.config)
    assert doctor.db_presets() == [] and doctor.db_catalogue() == []  # databases not read yet: nothing to say
    body = b">a\nMK\n"
    entry = load_catalogue().get("uniref90@2022_05")
    manifest = {"name": "uniref90", "version": "2022_05", "role": "uniref90", "sequences": "uniref90.fasta",
                "catalogue": entry.ref, "source_files": {f.name: f.sha256 for f in entry.files},
                "files": {"uniref90.fasta": {"bytes": len(body)}}}
    s3.put_object(Bucket="fs-db", Key="db/uniref90/2022_05/uniref90.fasta", Body=body)
    s3.put_object(Bucket="fs-db", Key="db/uniref90/2022_05/manifest.json", Body=json.dumps(manifest))
    s3.put_object(Bucket="fs-db", Key="db/uniref90/CURRENT", Body=b"2022_05\n")
    s3.put_object(Bucket="fs-db", Key="db/broken/CURRENT", Body=b"v1\n")  # incomplete: not counted
    assert doctor.databases()[0].status == "fail"
    [presets] = doctor.db_presets()
    assert presets.status == "fail" and "reduced_dbs: missing small_bfd, mgnify" in presets.detail
    [catalogue] = doctor.db_catalogue()
    assert catalogue.status == "pass" and catalogue.detail == "catalogue versions: uniref90@2022_05 = uniref90@2022_05"
