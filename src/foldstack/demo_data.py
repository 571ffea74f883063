"""Demo data for a machine without internet: a small sequence DB and demo weights.

``build_demo_data(home)`` builds

* ``home/db/demo_uniref/<version>/demo_uniref.fasta`` (+ ``manifest.json``, and
  ``home/db/demo_uniref/CURRENT``): 2,122 real protein sequences that ship inside the
  installed ``pyhmmer`` wheel (its ``tests/data/seqs``: a 2,100-protein bacterial
  proteome, 12 LuxC and 10 PKS I UniProtKB entries), never downloaded; the DB plays
  AlphaFold's ``uniref90`` role for the jackhmmer search;
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
DB_VERSION = "pyhmmer-seqs-1"
DB_FASTA = f"{DB_NAME}.fasta"
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


def build_demo_db(db_root: Path) -> Path:
    """Build (or keep) the demo DB under `db_root`; return its version directory."""
    from foldstack.steps.databases import build_local_version, write_manifest

    def fill(tmp: Path) -> None:
        with open(tmp / DB_FASTA, "w") as f:
            for rid, desc, seq in _demo_records():
                f.write(f">{rid} {desc}".rstrip() + "\n")
                for i in range(0, len(seq), 60):
                    f.write(seq[i:i + 60] + "\n")
        write_manifest(tmp, name=DB_NAME, version=DB_VERSION, role="uniref90", sequences=DB_FASTA,
                       max_hits=10000, source=SOURCE, license=LICENSE,
                       extra={"description": "demo sequence DB for foldstack's local demo (not UniRef90)"})

    return build_local_version(db_root, DB_NAME, DB_VERSION, fill)


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
