"""db_preset colabfold on ColabFold's prebuilt expandable profile databases (UniRef30 and
the env DB as ``setup_databases.sh`` installs them): the catalogue gives them their roles,
the refresh path publishes one from its ``.db.tar.gz`` (unpack, ``createindex``), and the
msa step searches them as ``colabfold_search`` does (search → expandaln → align →
filterresult → result2msa), here on tiny databases built with Debian's MMseqs2 through
``tsv2exprofiledb``, the command ColabFold's own TSV archives go through.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from foldstack.core.hashing import sha256_file
from tests.steps.conftest import stage

AA = "ACDEFGHIKLMNPQRSTVWY"


def _need_mmseqs() -> str:
    found = shutil.which("mmseqs")
    if found is None:
        if os.environ.get("FOLDSTACK_REQUIRE_TOOLS") == "1":
            pytest.fail("mmseqs is required (FOLDSTACK_REQUIRE_TOOLS=1): install Debian's mmseqs2")
        pytest.skip("Debian mmseqs2 not installed")
    return found


def _mutate(rng: random.Random, seq: str, rate: float) -> str:
    return "".join(rng.choice(AA) if rng.random() < rate else c for c in seq)


def _mm(*args: str | Path, cwd: Path) -> None:
    env = {**os.environ, "MMSEQS_FORCE_MERGE": "1"}
    subprocess.run(["mmseqs", *map(str, args), "-v", "1"], cwd=cwd, env=env, check=True, capture_output=True)


def _entries(db: Path) -> dict[int, str]:
    data = db.read_bytes()
    out = {}
    for line in Path(f"{db}.index").read_text().splitlines():
        key, offset, length = line.split("\t")[:3]
        out[int(key)] = data[int(offset):int(offset) + int(length)].rstrip(b"\x00").decode()
    return out


def tiny_profile_db(work: Path, prefix: str, clusters: list[list[tuple[str, str]]]) -> Path:
    """An expandable profile DB ``work/<prefix>`` of `clusters` (each [(name, sequence)],
    the first its representative), built the way ColabFold builds its own: the four TSV
    files (``<base>.tsv`` representatives, ``_h.tsv`` headers, ``_seq.tsv`` members,
    ``_aln.tsv`` representative-to-member alignments, here computed by ``mmseqs align``)
    turned into the DB by ``mmseqs tsv2exprofiledb``."""
    tmp = work / f".{prefix}-tsv"
    tmp.mkdir(parents=True)
    records = [(rec, i == 0) for cluster in clusters for i, rec in enumerate(cluster)]
    (tmp / "all.fasta").write_text("".join(f">{name}\n{seq}\n" for (name, seq), _ in records))
    _mm("createdb", "all.fasta", "seqdb", "--shuffle", "0", cwd=tmp)  # keys 0.. in file order
    reps, clu, key = [], [], 0
    for cluster in clusters:
        reps.append(key)
        clu += [f"{key}\t{key + j}\n" for j in range(len(cluster))]
        key += len(cluster)
    (tmp / "clu.tsv").write_text("".join(clu))
    _mm("tsv2db", "clu.tsv", "clu", "--output-dbtype", "6", cwd=tmp)
    _mm("align", "seqdb", "seqdb", "clu", "aln", "-a", "-e", "inf", cwd=tmp)
    seqs, heads, alns = _entries(tmp / "seqdb"), _entries(tmp / "seqdb_h"), _entries(tmp / "aln")
    base = tmp / "x"
    Path(f"{base}.tsv").write_text("".join(f"{k}\t{seqs[k].strip()}\n" for k in reps))
    Path(f"{base}_seq.tsv").write_text("".join(f"{k}\t{seqs[k].strip()}\n" for k in sorted(seqs)))
    Path(f"{base}_h.tsv").write_text("".join(f"{k}\t{heads[k].strip()}\n" for k in sorted(heads)))
    Path(f"{base}_aln.tsv").write_text("".join(f"{k}\t{line}\n" for k in reps for line in alns[k].splitlines()
                                               if line))
    _mm("tsv2exprofiledb", base, work / prefix, cwd=tmp)
    shutil.rmtree(tmp)
    for leftover in work.glob(f"{prefix}.sh"):
        leftover.unlink()
    return work / prefix


def _families(seed: int):
    rng = random.Random(seed)
    ancestor = "".join(rng.choice(AA) for _ in range(150))
    query = _mutate(rng, ancestor, 0.30)

    def cluster(tag: str, parent: str, n: int) -> list[tuple[str, str]]:
        rep = _mutate(rng, parent, 0.15)
        return [(f"{tag}{j} {tag} member {j}", rep if j == 0 else _mutate(rng, rep, 0.2)) for j in range(n)]

    def decoys(tag: str, count: int) -> list[list[tuple[str, str]]]:
        return [cluster(f"{tag}{d}_", "".join(rng.choice(AA) for _ in range(150)), 3) for d in range(count)]

    uniref = [cluster("UniRef100_A", ancestor, 6), *decoys("UniRef100_D", 4)]
    env = [cluster("ENV_E", ancestor, 5), *decoys("ENV_X", 4)]
    return query, uniref, env


def test_catalogue_gives_colabfolds_profile_databases_their_roles():
    from foldstack.steps.catalogue import load_catalogue

    catalogue = load_catalogue()
    for ref, role, prefix in (("colabfold_uniref30@2023_02", "colabfold_uniref30", "uniref30_2302_db"),
                              ("colabfold_envdb@2021_08", "colabfold_envdb", "colabfold_envdb_202108_db")):
        entry = catalogue.get(ref)
        assert (entry.role, entry.mmseqs_db, entry.sequences) == (role, prefix, None)
        spec = catalogue.refresh_spec(ref)
        assert spec["mmseqs_db"] == prefix and spec["unpack"] is True


def test_a_profile_database_serves_only_the_colabfold_roles():
    from foldstack.core.errors import BadInputError
    from foldstack.steps.refresh_db_source import parse_spec

    ok = {"name": "cf", "version": "1", "source": "/nowhere", "files": {"cf.db.tar.gz": "a" * 64}, "unpack": True,
          "role": "colabfold_envdb", "mmseqs_db": "cf_db"}
    assert parse_spec(ok).build_index  # createindex at refresh
    for bad in ({"role": "uniref90"}, {"mmseqs_db": "../cf_db"}, {"sequences": "x.fasta"},
                {"mmseqs_gpu_index": True}):
        with pytest.raises(BadInputError):
            parse_spec({**ok, **bad})
    with pytest.raises(BadInputError, match="mmseqs_db"):  # a colabfold role needs a FASTA or a profile DB
        parse_spec({k: v for k, v in ok.items() if k != "mmseqs_db"})


@pytest.mark.slow
def test_colabfold_preset_searches_prebuilt_profile_databases_end_to_end(tmp_path):
    """UniRef30 published from a ``.db.tar.gz`` by the refresh path (index built), the env
    DB registered from files on disk without an index; the msa step's A3M holds every
    member of the query's clusters (members other than representatives only reach it
    through expandaln), ahead of the unrelated clusters."""
    _need_mmseqs()
    from foldstack.steps.db_build import register_profile_database
    from foldstack.steps.msa import run_msa
    from foldstack.steps.presets import plan_searches
    from foldstack.steps.refresh_db import refresh_database
    from foldstack.steps.refresh_db_source import parse_spec

    query, uniref_clusters, env_clusters = _families(11)
    src, root = tmp_path / "src", tmp_path / "db"
    src.mkdir()
    root.mkdir()
    prefix = tiny_profile_db(src / "u", "tiny_uniref_db", uniref_clusters)
    archive = src / "tiny_uniref.db.tar.gz"  # packed like ColabFold's uniref30_2302.db.tar.gz
    with tarfile.open(archive, "w:gz") as tar:
        for f in sorted(prefix.parent.iterdir()):
            tar.add(f, arcname=f.name)
    spec = parse_spec({"name": "cf_uniref", "version": "tiny", "source": str(src),
                       "files": {archive.name: sha256_file(archive)}, "unpack": True,
                       "role": "colabfold_uniref30", "mmseqs_db": "tiny_uniref_db"})
    refresh_database(spec, root, "refresh-1")
    manifest = json.loads((root / "cf_uniref" / "tiny" / "manifest.json").read_text())
    assert manifest["mmseqs_db"] == "tiny_uniref_db" and manifest["sequences"] is None
    assert "tiny_uniref_db.idx" in manifest["files"] and "tiny_uniref_db_aln" in manifest["files"]
    assert manifest["indexes"]["mmseqs2"]["kind"] == "profile"

    env_prefix = tiny_profile_db(src / "e", "tiny_env_db", env_clusters)
    register_profile_database(root, "cf_env", "tiny", env_prefix, role="colabfold_envdb", index=False)
    assert not list((root / "cf_env" / "tiny").glob("*.idx*"))

    plan = plan_searches(root, "colabfold", "mmseqs2")
    assert [[d.name for d in s.databases] for s in plan.msa] == [["cf_uniref"], ["cf_env"]]
    assert plan.describe()["msa"][0]["params"]["profile_db"]["filterresult"]["qsc"] == 0.8

    scratch = tmp_path / "scratch"
    stage(scratch, "r", "t", query)
    out = run_msa("r", "t", scratch, root, "mmseqs2", db_preset="colabfold")
    info = json.loads((out / "features.json").read_text())
    run = info["mmseqs_target_db"]["colabfold_search"][0]
    assert run["cf_uniref"]["target_db"] == "index" and run["cf_uniref"]["expandaln"] == "run"
    assert run["cf_env"]["target_db"] == "no-index"  # colabfold_search's _seq/_aln case
    assert run["profile_db_params"]["realign"] == {"align_eval": 10, "max_accept": 100_000, "alt_ali": 10}

    names = [line[1:].split()[0] for line in (out / "msa.a3m").read_text().splitlines() if line.startswith(">")]
    uniref_members = [n.split()[0] for n, _ in uniref_clusters[0]]
    env_members = [n.split()[0] for n, _ in env_clusters[0]]
    assert set(uniref_members) <= set(names) and set(env_members) <= set(names), names
    uniref_rows = [n for n in names if n.startswith("UniRef100_")]
    env_rows = [n for n in names if n.startswith("ENV_")]
    assert set(uniref_rows[:len(uniref_members)]) == set(uniref_members), uniref_rows
    assert set(env_rows[:len(env_members)]) == set(env_members), env_rows
    assert info["hits"]["cf_uniref"][0] >= len(uniref_members) and info["hits"]["cf_env"][0] >= len(env_members)


def test_unpack_turns_aliasdb_links_into_files_and_refuses_other_links(tmp_path):
    """MMseqs2's aliasdb leaves ``<prefix>_seq_h`` -> ``<prefix>_h`` in a profile database's
    archive: unpacked as the archive's own file; a link leaving the archive is refused."""
    import io

    from foldstack.core.errors import BadInputError
    from foldstack.steps.refresh_db_unpack import unpack_archive

    def archive(path: Path, links: dict[str, str]) -> None:
        with tarfile.open(path, "w:gz") as tar:
            for name, target in links.items():  # links first: resolved after every file is out
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
            info = tarfile.TarInfo("p_db_h")
            info.size = 6
            tar.addfile(info, io.BytesIO(b"hdr\n\x00\x00"))

    dest = tmp_path / "ok"
    dest.mkdir()
    archive(dest / "p.db.tar.gz", {"p_db_seq_h": "p_db_h"})
    assert sorted(unpack_archive(dest / "p.db.tar.gz", dest)) == ["p_db_h", "p_db_seq_h"]
    assert not (dest / "p_db_seq_h").is_symlink() and (dest / "p_db_seq_h").read_bytes() == b"hdr\n\x00\x00"
    for i, bad in enumerate(("../p_db_h", "/etc/passwd", "missing")):
        dest = tmp_path / f"bad{i}"
        dest.mkdir()
        archive(dest / "p.db.tar.gz", {"p_db_seq_h": bad})
        with pytest.raises(BadInputError, match="a link"):
            unpack_archive(dest / "p.db.tar.gz", dest)


@pytest.mark.slow
def test_fasta_built_uniref_and_a_profile_env_db_mix(tmp_path):
    """UniRef30's role served by a database built from FASTA (``foldstack db build``), the
    env DB's by a prebuilt profile database: the env search still starts from the UniRef
    search's profile, and only the profile database is expanded."""
    _need_mmseqs()
    from foldstack.steps.db_build import build_database, register_profile_database
    from foldstack.steps.msa import run_msa

    query, uniref_clusters, env_clusters = _families(5)
    root, src = tmp_path / "db", tmp_path / "src"
    src.mkdir()
    fasta = src / "uniref.fasta"
    fasta.write_text("".join(f">{name}\n{seq}\n" for cluster in uniref_clusters for name, seq in cluster))
    build_database(root, "fasta_uniref", "v1", [fasta], role="colabfold_uniref30")
    register_profile_database(root, "cf_env", "v1", tiny_profile_db(src / "e", "env_db", env_clusters),
                              role="colabfold_envdb")
    scratch = tmp_path / "scratch"
    stage(scratch, "r", "t", query)
    out = run_msa("r", "t", scratch, root, "mmseqs2", db_preset="colabfold")
    run = json.loads((out / "features.json").read_text())["mmseqs_target_db"]["colabfold_search"][0]
    assert run["fasta_uniref"]["profile_db"] is None and run["cf_env"]["target_db"] == "index"
    assert run["expandaln"] == "fasta_uniref: not run (FASTA-built), cf_env: run"
    names = {line[1:].split()[0] for line in (out / "msa.a3m").read_text().splitlines() if line.startswith(">")}
    assert {n.split()[0] for n, _ in uniref_clusters[0] + env_clusters[0]} <= names
