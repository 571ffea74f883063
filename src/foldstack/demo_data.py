"""Demo data for a machine without internet: a small sequence DB and demo weights.

``build_demo_data(home)`` builds

* ``home/db/demo_uniref/<version>/demo_uniref.fasta`` (+ ``manifest.json``, and
  ``home/db/demo_uniref/CURRENT``): 2,122 real protein sequences that ship inside the
  installed ``pyhmmer`` wheel (its ``tests/data/seqs``: a 2,100-protein bacterial
  proteome, 12 LuxC and 10 PKS I UniProtKB entries), never downloaded; the DB plays
  AlphaFold's ``uniref90`` role and ColabFold's UniRef30 (``colabfold_uniref30``);
* ``home/db/demo_mgnify/`` and ``home/db/demo_small_bfd/``: the other roles of the
  ``reduced_dbs`` and ``colabfold`` presets (:data:`foldstack.steps.databases.PRESETS`):
  the 10 proteins of the MIBiG cluster BGC0001090 (bacillomycin D, *Bacillus velezensis*
  FZB42; GenBank translations in the same wheel) as ``mgnify`` and ColabFold's
  environmental DB, the 22 LuxC/PKS I UniProtKB entries as ``small_bfd``. So a local run
  searches exactly what an AlphaFold ``reduced_dbs`` (or ColabFold) run does, at demo scale;
* ``home/db/pdb_mmcif/<version>/`` (``mmcif_files/*.cif`` + ``pdb_seqres.txt``): a tiny
  template DB assembled from the real PDB entries 1A7G and 2XHE that ship in Debian's
  ``python-biopython-doc`` (``Tests/PDB/*.cif.gz``; they carry the revision dates
  AlphaFold's template code needs), never downloaded and not copied into the repo;
  skipped (with a note) when that package is not installed; only with
  ``build_demo_data(home, templates=True)`` (or :func:`build_demo_templates`);
* ``home/weights/{esmfold,alphafold2}/``: tiny random demo weights
  (:mod:`foldstack.weights.demo`), marked ``DEMO_WEIGHTS``.

It is idempotent: an existing, intact DB version and current demo weights are kept.
Credits and licences: ``foldstack/data/README.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

DB_NAME = "demo_uniref"
DB_VERSION = "pyhmmer-seqs-2"  # 2: roles for the database presets, sequence_count
DB_FASTA = f"{DB_NAME}.fasta"
DB_ROLES = ["uniref90", "colabfold_uniref30"]
MGNIFY_NAME, MGNIFY_ROLES, MGNIFY_VERSION = "demo_mgnify", ["mgnify", "colabfold_envdb"], "bgc0001090-1"
SMALL_BFD_NAME, SMALL_BFD_ROLES, SMALL_BFD_VERSION = "demo_small_bfd", ["small_bfd"], "uniprot-luxc-pksi-1"
BGC_FILE = "BGC0001090.gbk"
BGC_SOURCE = ("pyhmmer (MIT) tests/data/seqs/BGC0001090.gbk: MIBiG BGC0001090 (bacillomycin D, Bacillus "
              "velezensis FZB42), the CDS translations (GenBank ABS74177-ABS74186)")
BGC_LICENSE = "MIBiG data CC BY 4.0; INSDC (GenBank) data: free and unrestricted use"
SOURCE_FILES = ("938293.PRJEB85.HG003687.faa", "LuxC.faa", "PKSI.faa")
SOURCE = ("pyhmmer (MIT) tests/data/seqs: " + ", ".join(SOURCE_FILES)
          + "; LuxC/PKSI entries from UniProtKB, the proteome from ENA project PRJEB85 (Prodigal gene calls)")
LICENSE = "UniProtKB sequences CC BY 4.0 (credit: UniProt Consortium); ENA data: free and unrestricted use"


def pyhmmer_seqs_dir() -> Path:
    import pyhmmer

    path = Path(pyhmmer.__file__).parent / "tests" / "data" / "seqs"
    missing = [f for f in SOURCE_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the installed pyhmmer has no test data ({path} lacks {', '.join(missing)}); "
            "install pyhmmer from its wheel on PyPI (it ships tests/data)"
        )
    return path


def _demo_records() -> list[tuple[str, str, str]]:
    """(id, description, sequence) for every source sequence, stop codons removed."""
    records = []
    src = pyhmmer_seqs_dir()
    for name in SOURCE_FILES:
        rid, desc, parts = None, "", []
        for line in (src / name).read_text().splitlines():
            if line.startswith(">"):
                if rid is not None:
                    records.append((rid, desc, "".join(parts).rstrip("*")))
                rid, _, desc = line[1:].strip().partition(" ")
                parts = []
            elif line.strip():
                parts.append(line.strip())
        if rid is not None:
            records.append((rid, desc, "".join(parts).rstrip("*")))
    return records


def _bgc_records() -> list[tuple[str, str, str]]:
    """(id, description, sequence) of every CDS translation in the bundled BGC0001090."""
    from Bio import SeqIO

    records = []
    for rec in SeqIO.parse(str(pyhmmer_seqs_dir() / BGC_FILE), "genbank"):
        for feature in rec.features:
            q = feature.qualifiers
            if feature.type == "CDS" and q.get("translation"):
                rid = (q.get("protein_id") or q.get("locus_tag"))[0]
                desc = f"{(q.get('product') or [''])[0]} OS=Bacillus velezensis FZB42 {(q.get('locus_tag') or [''])[0]}"
                records.append((rid, desc.strip(), q["translation"][0].rstrip("*")))
    return records


def _write_fasta(path: Path, records: list[tuple[str, str, str]]) -> None:
    with open(path, "w") as f:
        for rid, desc, seq in records:
            f.write(f">{rid} {desc}".rstrip() + "\n")
            for i in range(0, len(seq), 60):
                f.write(seq[i:i + 60] + "\n")


def _build_role_db(db_root: Path, name: str, version: str, roles: list[str], records, source: str,
                   license: str, description: str, max_hits: int | None) -> Path:
    from foldstack.steps.databases import build_local_version, write_manifest

    def fill(tmp: Path) -> None:
        _write_fasta(tmp / f"{name}.fasta", records)
        write_manifest(tmp, name=name, version=version, role=roles[0], sequences=f"{name}.fasta",
                       max_hits=max_hits, source=source, license=license,
                       extra={"roles": roles, "description": description})

    return build_local_version(db_root, name, version, fill)


def build_demo_db(db_root: Path) -> Path:
    """Build (or keep) the demo DBs under `db_root` (every role of the ``reduced_dbs`` and
    ``colabfold`` presets); return the main one's (``demo_uniref``) version directory."""
    _build_role_db(db_root, MGNIFY_NAME, MGNIFY_VERSION, MGNIFY_ROLES, _bgc_records(), BGC_SOURCE, BGC_LICENSE,
                   "demo metagenome-like DB for foldstack's local demo (not MGnify)", 501)
    luxc_pksi = [r for r in _demo_records() if not r[0].startswith("938293.")]
    _build_role_db(db_root, SMALL_BFD_NAME, SMALL_BFD_VERSION, SMALL_BFD_ROLES, luxc_pksi,
                   "pyhmmer (MIT) tests/data/seqs: LuxC.faa, PKSI.faa (UniProtKB)", LICENSE,
                   "demo DB for foldstack's local demo (not small BFD)", None)
    return _build_role_db(db_root, DB_NAME, DB_VERSION, DB_ROLES, _demo_records(), SOURCE, LICENSE,
                          "demo sequence DB for foldstack's local demo (not UniRef90)", 10000)


TEMPLATE_DB_NAME = "pdb_mmcif"
TEMPLATE_DB_VERSION = "biopython-doc-1"
TEMPLATE_ENTRIES = ("1A7G", "2XHE")
TEMPLATE_DIRS = (
    Path("/usr/share/doc/python-biopython-doc/Tests/PDB"),
    Path("/usr/share/doc/python3-biopython/Tests/PDB"),
)
TEMPLATE_ENV = "FOLDSTACK_TEMPLATE_CIF_DIR"
TEMPLATE_SOURCE = ("Debian python-biopython-doc Tests/PDB: 1A7G.cif.gz, 2XHE.cif.gz "
                   "(wwPDB entries 1A7G and 2XHE)")
TEMPLATE_LICENSE = "wwPDB data: CC0 1.0"


def template_cif_files() -> list[Path] | None:
    """The fixture mmCIF files (1A7G, 2XHE), or None when no directory holds them."""
    dirs = [Path(os.environ[TEMPLATE_ENV])] if os.environ.get(TEMPLATE_ENV) else list(TEMPLATE_DIRS)
    for d in dirs:
        files = [d / f"{entry}.cif.gz" for entry in TEMPLATE_ENTRIES]
        files = [f if f.is_file() else f.with_suffix("") for f in files]  # .cif.gz or .cif
        if all(f.is_file() for f in files):
            return files
    return None


def build_demo_templates(db_root: Path) -> Path | None:
    """Build (or keep) the demo template DB; None when the fixture files are missing."""
    from foldstack.steps.templates import build_template_db

    files = template_cif_files()
    if files is None:
        print("foldstack demo data: no template DB (install Debian's python-biopython-doc for the "
              "1A7G/2XHE fixtures); the msa step will write empty template features", flush=True)
        return None
    return build_template_db(db_root, files, name=TEMPLATE_DB_NAME, version=TEMPLATE_DB_VERSION,
                             source=TEMPLATE_SOURCE, license=TEMPLATE_LICENSE)


def build_demo_data(home: Path | str, *, templates: bool = False) -> dict[str, Path]:
    """Build ``home/db`` (demo DB; with `templates`, the demo template DB too) and
    ``home/weights`` (demo weights); idempotent.

    Templates are opt-in for now: under AlphaFold's permissive hmmsearch thresholds
    (E 100) the bundled demo target already picks up a weak 2XHE hit, and existing
    tests pin "no template" features for it."""
    from foldstack.weights.demo import write_demo_weights

    home = Path(home)
    db_root = home / "db"
    weights = home / "weights"
    build_demo_db(db_root)
    if templates:
        build_demo_templates(db_root)
    write_demo_weights(weights)
    return {"db": db_root, "weights": weights}


def example_fasta() -> Path:
    """The bundled example FASTA for the demo run."""
    return Path(__file__).parent / "data" / "examples" / "demo.fasta"
