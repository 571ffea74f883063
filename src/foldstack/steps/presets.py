"""Database presets: what the msa step searches, with which tool and parameters.

A preset (the request's ``db_preset``) is AlphaFold's ``run_alphafold.py --db_preset``
(``full_dbs``, ``reduced_dbs``) or ColabFold's ``colabfold_search`` (``colabfold``): the
database roles searched, by which tool, with the parameters those pipelines use, and the
order their MSAs go into the features; the template search for monomers and multimers;
the UniProt search multimers pair with. :func:`plan_searches` binds a preset to the
databases installed under the root (each serving one or more roles, see
:mod:`foldstack.steps.databases`). A required role that is missing is a
:class:`MissingDatabaseError` (exit 2) naming the roles and how to get them; optional ones
(templates, UniProt for multimer pairing) switch the feature off with a note that
features.json records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.steps.catalogue import PROFILE_ROLES
from foldstack.steps.databases import PUBLISH_HINT, ROLES, Database, current_pins, open_database, verify_database

# AlphaFold's tool settings (alphafold/data/tools/*.py defaults, as run_alphafold.py uses them).
JACKHMMER = {"n_iter": 1, "e_value": 0.0001, "F1": 0.0005, "F2": 0.00005, "F3": 0.0000005}
HHBLITS = {"n_iter": 3, "e_value": 0.001, "maxseq": 1_000_000, "realign_max": 100_000, "maxfilt": 100_000,
           "min_prefilter_hits": 1000, "all_seqs": False, "p": 20, "z": 500}
HHSEARCH = {"maxseq": 1_000_000}
HMMSEARCH = {"F1": 0.1, "F2": 0.1, "F3": 0.1, "incE": 100.0, "E": 100.0, "domE": 100.0, "incdomE": 100.0}
# ColabFold 1.5's colabfold_search defaults (colabfold/mmseqs/search.py): the search, and the
# filter result2msa applies to the A3M it writes.
COLABFOLD_SEARCH = {"sensitivity": 8.0, "num_iterations": 3, "evalue": 0.1, "max_seqs": 10000, "db_load_mode": 2}
COLABFOLD_FILTER = {"filter_msa": 1, "filter_min_enable": 1000, "diff": 3000, "qid": "0.0,0.2,0.4,0.6,0.8,1.0",
                    "qsc": 0, "max_seq_id": 0.95}
# On ColabFold's prebuilt expandable profile databases (UniRef30, the env DB) the hits on
# cluster representatives are expanded to their members, realigned and filtered before
# result2msa: colabfold/mmseqs/search.py (mmseqs_search_monomer) with filter=True, which sets
# align_eval 10, qsc 0.8 and max_accept 100000; expand_eval stays inf (its comment: 0.1 "was
# not used in benchmarks"). expand_filter_clusters and max_seq_id 0.95 apply to UniRef30's
# expansion only; the env DB's expandaln runs with MMseqs2's defaults for them, as there.
COLABFOLD_EXPAND = {"expansion_mode": 0, "expand_eval": "inf", "expand_filter_clusters": 1, "max_seq_id": 0.95}
COLABFOLD_REALIGN = {"align_eval": 10, "max_accept": 100_000, "alt_ali": 10}
COLABFOLD_FILTERRESULT = {"qid": 0, "qsc": 0.8, "diff": 0, "max_seq_id": 1.0, "filter_min_enable": 100}
COLABFOLD_PROFILE_DB = {"expand": COLABFOLD_EXPAND, "realign": COLABFOLD_REALIGN,
                        "filterresult": COLABFOLD_FILTERRESULT}
MAX_TEMPLATE_HITS = 20  # run_alphafold.py MAX_TEMPLATE_HITS


@dataclass(frozen=True)
class SearchSpec:
    """One search of a preset: these roles' databases, one tool, its parameters."""

    roles: tuple[str, ...]  # hhblits searches bfd + uniref30 together, everything else one role
    tool: str  # jackhmmer | hhblits | mmseqs2 | hhsearch | hmmsearch
    params: dict[str, Any]
    max_hits: int | None = None  # rows AlphaFold keeps (None: all)
    seeded_by_profile: bool = False  # ColabFold: the env DB search starts from the UniRef profile

    @property
    def key(self) -> str:
        """The search's name in features.json and the chain cache: its roles, joined."""
        return "+".join(self.roles)


@dataclass(frozen=True)
class DbPreset:
    """A database preset: MSA searches (in the order their MSAs enter the features),
    template searches for monomers and multimers (the first whose databases are installed
    runs), and the UniProt search multimers pair with."""

    name: str
    msa: tuple[SearchSpec, ...]
    templates_monomer: tuple[SearchSpec, ...]
    templates_multimer: tuple[SearchSpec, ...]
    pairing: SearchSpec | None
    dedupe: bool  # AlphaFold's make_msa_features drops repeated rows across MSAs; ColabFold filters in MMseqs2
    defined_by: str


_UNIREF90 = SearchSpec(("uniref90",), "jackhmmer", JACKHMMER, 10_000)
_MGNIFY = SearchSpec(("mgnify",), "jackhmmer", JACKHMMER, 501)
_UNIPROT = SearchSpec(("uniprot",), "jackhmmer", JACKHMMER, 50_000)  # pipeline_multimer max_uniprot_hits
_PDB70 = SearchSpec(("pdb70", "pdb_mmcif"), "hhsearch", HHSEARCH, MAX_TEMPLATE_HITS)
_PDB_SEQRES = SearchSpec(("pdb_mmcif",), "hmmsearch", HMMSEARCH, MAX_TEMPLATE_HITS)
PRESETS: dict[str, DbPreset] = {
    "full_dbs": DbPreset(
        "full_dbs",
        msa=(_UNIREF90, SearchSpec(("bfd", "uniref30"), "hhblits", HHBLITS), _MGNIFY),
        templates_monomer=(_PDB70, _PDB_SEQRES), templates_multimer=(_PDB_SEQRES,), pairing=_UNIPROT, dedupe=True,
        defined_by="AlphaFold 2.3 run_alphafold.py --db_preset=full_dbs (data/pipeline.py, pipeline_multimer.py)"),
    "reduced_dbs": DbPreset(
        "reduced_dbs",
        msa=(_UNIREF90, SearchSpec(("small_bfd",), "jackhmmer", JACKHMMER), _MGNIFY),
        templates_monomer=(_PDB70, _PDB_SEQRES), templates_multimer=(_PDB_SEQRES,), pairing=_UNIPROT, dedupe=True,
        defined_by="AlphaFold 2.3 run_alphafold.py --db_preset=reduced_dbs (data/pipeline.py, pipeline_multimer.py)"),
    "colabfold": DbPreset(
        "colabfold",
        msa=(SearchSpec(("colabfold_uniref30",), "mmseqs2",
                        {**COLABFOLD_SEARCH, "filter": COLABFOLD_FILTER, "profile_db": COLABFOLD_PROFILE_DB}),
             SearchSpec(("colabfold_envdb",), "mmseqs2",
                        {**COLABFOLD_SEARCH, "filter": COLABFOLD_FILTER, "profile_db": COLABFOLD_PROFILE_DB},
                        seeded_by_profile=True)),
        templates_monomer=(_PDB_SEQRES,), templates_multimer=(_PDB_SEQRES,),
        pairing=SearchSpec(("uniprot",), "mmseqs2", {**COLABFOLD_SEARCH, "num_iterations": 1}, 50_000),
        dedupe=False,
        defined_by="ColabFold 1.5 colabfold_search (MMseqs2: UniRef30 then the environmental DB, seeded by "
                   "the UniRef30 profile; on ColabFold's prebuilt profile databases expandaln, align and "
                   "filterresult; A3M filtered by result2msa)"),
}
DEFAULT_PRESET = "reduced_dbs"
OPTIONAL_ROLES = ("pdb70", "pdb_mmcif", "uniprot")  # off with a note when missing


class MissingDatabaseError(BadInputError):
    """A preset needs a database role that no database under the root serves (exit 2;
    ``details``: the preset and the missing roles)."""

    code = "database_missing"

    def __init__(self, message: str, *, preset: str, missing: list[str]) -> None:
        super().__init__(message)
        self.preset, self.missing = preset, missing

    def __str__(self) -> str:
        return f"[{self.code}] {super().__str__()}"


@dataclass
class PlannedSearch:
    """A preset's search bound to the installed databases that serve its roles."""

    spec: SearchSpec
    databases: list[Database]
    tool: str  # the spec's tool, or mmseqs2 when --msa-tool mmseqs2 stands in for jackhmmer

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def label(self) -> str:
        return ", ".join(f"{d.name}/{d.version}" for d in self.databases)


@dataclass
class SearchPlan:
    """What one msa job searches: MSA searches in feature order, the template search
    (None: templates off, ``template_note`` says why), the pairing search (None: off)."""

    preset: DbPreset
    msa_tool: str
    msa: list[PlannedSearch]
    templates: PlannedSearch | None
    template_note: str
    pairing: PlannedSearch | None
    pairing_note: str

    def databases(self) -> list[Database]:
        """Every database this plan reads, once, in plan order."""
        seen: dict[tuple[str, str], Database] = {}
        for search in [*self.msa, self.templates, self.pairing]:
            for db in (search.databases if search else []):
                seen.setdefault((db.name, db.version), db)
        return list(seen.values())

    def describe(self) -> dict[str, Any]:
        """The plan as features.json records it."""
        def one(search: PlannedSearch | None) -> dict[str, Any] | None:
            if search is None:
                return None
            return {"search": search.key, "tool": search.tool, "databases": [d.name for d in search.databases],
                    "params": search.spec.params if search.tool == search.spec.tool else "mmseqs2 (--msa-tool)",
                    "max_hits": search.spec.max_hits}
        return {"name": self.preset.name, "defined_by": self.preset.defined_by, "msa_tool": self.msa_tool,
                "msa": [one(s) for s in self.msa], "templates": one(self.templates),
                "template_note": self.template_note, "pairing": one(self.pairing), "pairing_note": self.pairing_note,
                "dedupe_across_msas": self.preset.dedupe}


def installed_roles(db_root: Path | str) -> dict[str, list[Database]]:
    """``{role: [databases serving it, by name]}`` under the root (unverified)."""
    root = Path(db_root)
    if not root.is_dir():
        raise BadInputError(
            f"database root {root} does not exist (for the local demo, "
            "foldstack.demo_data.build_demo_data(<home>) builds <home>/db)")
    by_role: dict[str, list[Database]] = {}
    for current in sorted(root.glob("*/CURRENT")):
        db = open_database(root, current.parent.name, verify=False)
        for role in db.roles:
            by_role.setdefault(role, []).append(db)
    pins = current_pins()
    for dbs in by_role.values():  # a database the run pins (--db NAME=VERSION) serves its roles first
        dbs.sort(key=lambda d: d.name not in pins)
    return by_role


def _usable(db: Database, role: str, tool: str) -> str:
    """'' if `db` can serve `role` for `tool`, else what its manifest lacks."""
    if tool in ("hhblits", "hhsearch") and role != "pdb_mmcif" and db.hhsuite_prefix is None:
        return f"{db.name} has no hhsuite_db (the HH-suite ffindex prefix) in its manifest"
    if tool == "mmseqs2" and role in PROFILE_ROLES and db.mmseqs_db is not None:
        return ""  # ColabFold's prebuilt profile database (foldstack.steps.mmseqs_profile)
    if db.mmseqs_db is not None:
        return (f"{db.name} is a prebuilt MMseqs2 profile database (mmseqs_db), which serves only "
                f"{', '.join(PROFILE_ROLES)} in db_preset colabfold")
    if tool in ("jackhmmer", "mmseqs2") and not db.manifest.get("sequences"):
        return f"{db.name} has no sequences (FASTA) in its manifest"
    if role == "pdb_mmcif" and not (db.manifest.get("seqres") and db.manifest.get("mmcif_dir")):
        return f"{db.name} lacks seqres or mmcif_dir in its manifest"
    return ""


def _bind(spec: SearchSpec, by_role: dict[str, list[Database]], tool: str) -> tuple[list[Database], list[str]]:
    """(the first usable database of each role, [what is missing])."""
    found, missing = [], []
    for role in spec.roles:
        candidates = by_role.get(role, [])
        usable = [d for d in candidates if not _usable(d, role, tool)]
        if usable:
            found.append(usable[0])
        else:
            why = "; ".join(_usable(d, role, tool) for d in candidates)
            missing.append(f"{role} ({why})" if why else role)
    return found, missing


def plan_searches(db_root: Path | str, preset: str = DEFAULT_PRESET, msa_tool: str = "jackhmmer", *,
                  multimer: bool = False, pairing: bool | None = None, verify: bool = True) -> SearchPlan:
    """Bind `preset` to the databases under `db_root` (see :data:`PRESETS`).

    `multimer` picks the multimer template search; `pairing` (default: `multimer`) plans
    the UniProt search, which AlphaFold runs for heteromers only. ``msa_tool="mmseqs2"``
    with an AlphaFold preset searches the jackhmmer roles with MMseqs2 instead (the fast
    path; hhblits stays hhblits). Raises :class:`MissingDatabaseError` for a missing
    required role.
    """
    pairing = multimer if pairing is None else pairing
    if preset not in PRESETS:
        raise BadInputError(f"unknown db_preset {preset!r} (known: {', '.join(PRESETS)})")
    spec = PRESETS[preset]
    if preset == "colabfold" and msa_tool != "mmseqs2":
        raise BadInputError("db_preset colabfold searches with MMseqs2: use msa_tool mmseqs2")
    by_role = installed_roles(db_root)

    def tool_for(s: SearchSpec) -> str:
        return "mmseqs2" if (s.tool == "jackhmmer" and msa_tool == "mmseqs2") else s.tool

    msa, missing = [], []
    for s in spec.msa:
        dbs, lacking = _bind(s, by_role, tool_for(s))
        missing += lacking
        msa.append(PlannedSearch(s, dbs, tool_for(s)))
    if missing:
        raise MissingDatabaseError(
            f"db_preset {preset} needs database role(s) that nothing under {db_root} serves: "
            + "; ".join(f"{m}: get it from {ROLES.get(m.split(' ')[0], 'its publisher')}" for m in missing)
            + f". Then {PUBLISH_HINT}. Installed roles: {', '.join(sorted(by_role)) or 'none'}."
            + (" For a local try-out, foldstack.demo_data builds demo databases for reduced_dbs and colabfold."
               if preset != "full_dbs" else
               " For a local try-out use db_preset reduced_dbs (the demo databases serve it)."),
            preset=preset, missing=[m.split(" ")[0] for m in missing])

    templates, template_note = None, ""
    options = spec.templates_multimer if multimer else spec.templates_monomer
    notes = []
    for s in options:
        dbs, lacking = _bind(s, by_role, s.tool)
        if not lacking:
            templates = PlannedSearch(s, dbs, s.tool)
            if s is not options[0]:
                template_note = (f"{options[0].tool} on {options[0].key} as AlphaFold does is not possible "
                                 f"({'; '.join(notes)}): {s.tool} on {s.key} instead")
            break
        notes.append(f"missing {', '.join(lacking)}")
    if templates is None:
        template_note = (f"templates off: no template database ({'; '.join(notes)}); the features hold the empty "
                         f"template placeholder. Get them from {ROLES['pdb_mmcif']}")

    pairing_search, pairing_note = None, "monomer: no pairing"
    if multimer and not pairing:
        pairing_note = "off: a homomer (AlphaFold pairs no rows and searches no UniProt for it)"
    elif multimer:
        if spec.pairing is None:
            pairing_note = "off: the preset pairs no MSA rows"
        else:
            dbs, lacking = _bind(spec.pairing, by_role, tool_for(spec.pairing))
            if lacking:
                pairing_note = (f"off: no uniprot database ({', '.join(lacking)}), so no rows are paired across "
                                f"chains (the paired MSA holds only the query). Get it from {ROLES['uniprot']}")
            else:
                pairing_search = PlannedSearch(spec.pairing, dbs, tool_for(spec.pairing))
                pairing_note = f"on: species identifiers from {dbs[0].name}/{dbs[0].version}"
    plan = SearchPlan(spec, msa_tool, msa, templates, template_note, pairing_search, pairing_note)
    if verify:
        for db in plan.databases():
            verify_database(db)
    return plan
