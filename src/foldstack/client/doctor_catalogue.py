"""`foldstack doctor`'s database checks against what foldstack knows, once the `databases`
check has read every complete ``<db_uri>/<name>/CURRENT`` version:

  db-presets    which database presets (foldstack.steps.presets: reduced_dbs, full_dbs,
                colabfold) the installed roles serve, which required roles each one lacks
                (the msa step's MissingDatabaseError before any job starts), and whether
                templates and multimer pairing are on; the catalogue entries that serve a
                missing role are named in the fix.
  db-catalogue  whether each installed version is a catalogue version
                (foldstack.steps.catalogue): made by the refresh workflow from an entry
                the catalogue still lists (the manifest's `catalogue`), with the
                publisher's sha256 where the catalogue has one (today's entries publish
                none: the digest is recorded on first use). A version made by hand or
                from a retired entry is a warning; a download digest that differs from
                the catalogue's is a failure (not the publisher's bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from foldstack.client import doctor_hints as hints
from foldstack.client.doctor_check import FAIL, PASS, WARN, Check
from foldstack.steps.catalogue import Catalogue, check_role_fields, load_catalogue
from foldstack.steps.databases import ROLES
from foldstack.steps.presets import DEFAULT_PRESET, PRESETS, DbPreset, SearchSpec


@dataclass(frozen=True)
class InstalledDatabase:
    """A complete database version under `db_uri` (its CURRENT, manifest and files agree)."""

    name: str
    version: str
    manifest: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def roles(self) -> tuple[str, ...]:
        """As foldstack.steps.databases.Database.roles reads them: `roles`, else `role`."""
        roles = self.manifest.get("roles")
        if isinstance(roles, list) and roles:
            return tuple(str(r) for r in roles)
        role = self.manifest.get("role")
        return (str(role),) if role else ()


def served_roles(installed: Sequence[InstalledDatabase]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({role: [refs serving it]}, {role: why a database declaring it cannot serve it}).
    A role needs what its kind needs in the manifest (sequences, hhsuite_db, seqres and
    mmcif_dir), the same rule the catalogue and the msa step apply."""
    served: dict[str, list[str]] = {}
    unusable: dict[str, str] = {}
    for db in installed:
        m = db.manifest
        for role in db.roles:
            try:
                check_role_fields(db.ref, role, m.get("sequences"), m.get("seqres"), m.get("mmcif_dir"),
                                  m.get("hhsuite_db"), m.get("mmseqs_db"))
            except ValueError as exc:
                unusable.setdefault(role, str(exc))
                continue
            served.setdefault(role, []).append(db.ref)
    return served, unusable


def _roles(specs: Sequence[SearchSpec]) -> list[str]:
    return list(dict.fromkeys(r for s in specs for r in s.roles))


def _preset_state(preset: DbPreset, served: dict[str, list[str]]) -> tuple[list[str], str]:
    """(required roles missing, a description of the optional features)."""
    missing = [r for r in _roles(preset.msa) if r not in served]
    templates = next((s for s in preset.templates_monomer if all(r in served for r in s.roles)), None)
    extras = [f"templates {templates.tool} on {templates.key}" if templates else
              f"templates off (no {' or '.join(s.key for s in preset.templates_monomer)})"]
    if preset.pairing is not None:
        paired = all(r in served for r in preset.pairing.roles)
        extras.append("multimer pairing on" if paired else f"multimer pairing off (no {preset.pairing.key})")
    return missing, ", ".join(extras)


def catalogue_refs_for(roles: Sequence[str], catalogue: Catalogue) -> tuple[list[str], list[str]]:
    """(catalogue refs serving `roles`, fixed versions before moving ones; roles no entry serves)."""
    refs, uncatalogued = [], []
    for role in roles:
        entries = sorted((e for e in catalogue.entries if e.kind == "database" and e.role == role),
                         key=lambda e: e.moving)
        if entries:
            refs.append(entries[0].ref)
        else:
            uncatalogued.append(role)
    return refs, uncatalogued


def preset_check(installed: Sequence[InstalledDatabase]) -> Check:
    served, unusable = served_roles(installed)
    lines, ready, missing_by = [], [], {}
    for name, preset in PRESETS.items():
        missing, extras = _preset_state(preset, served)
        missing_by[name] = missing
        if missing:
            why = [f"{r} ({unusable[r]})" if r in unusable else r for r in missing]
            lines.append(f"{name}: missing {', '.join(why)}")
        else:
            ready.append(name)
            lines.append(f"{name}: ready, {extras}")
    detail = "; ".join(lines)
    if DEFAULT_PRESET in ready:
        return Check("db-presets", PASS, detail)
    # The default preset's missing roles first: requests that name no db_preset use it.
    refs, uncatalogued = catalogue_refs_for(missing_by[DEFAULT_PRESET], load_catalogue())
    fix = hints.preset_hint(DEFAULT_PRESET, refs, {r: ROLES.get(r, "its publisher") for r in uncatalogued})
    if ready:
        return Check("db-presets", WARN, f"{detail} (requests must name db_preset {' or '.join(ready)}: the "
                     f"default, {DEFAULT_PRESET}, cannot run)", fix)
    return Check("db-presets", FAIL, f"no database preset can run: {detail}", fix)


def _catalogue_state(db: InstalledDatabase, catalogue: Catalogue) -> tuple[str, str]:
    """(pass | warn | fail, what was found) for one installed database."""
    claimed = db.manifest.get("catalogue")
    try:
        entry = catalogue.get(str(claimed) if claimed else db.ref)
    except KeyError:
        if claimed:
            return WARN, f"{db.ref} was made from {claimed}, which the catalogue no longer lists"
        return WARN, f"{db.ref} is not a catalogue version (built by hand or from another source)"
    if not claimed:  # the refresh workflow records the entry it fetched (manifest `catalogue`)
        return WARN, (f"{db.ref} has the name and version of {entry.ref} but was not made from it by the "
                      "refresh workflow (its manifest names no catalogue entry)")
    if entry.kind != "database":
        return FAIL, f"{db.ref}: {entry.ref} is {entry.kind}, not a database"
    fetched = db.manifest.get("source_files")
    fetched = fetched if isinstance(fetched, dict) else {}
    published = {f.name: f.sha256 for f in entry.files if f.sha256}
    wrong = sorted(n for n, sha in published.items() if n in fetched and fetched[n] != sha)
    if wrong:
        return FAIL, f"{db.ref}: sha256 of {', '.join(wrong)} differs from {entry.ref} in the catalogue"
    unchecked = sorted(n for n in published if n not in fetched)
    if unchecked:
        return WARN, f"{db.ref}: its manifest records no download digest of {', '.join(unchecked[:3])}"
    moving = f", a moving entry (fetched {db.manifest.get('fetched_at', '?')})" if entry.moving else ""
    return PASS, f"{db.ref} = {entry.ref}{moving}"


def catalogue_check(installed: Sequence[InstalledDatabase], catalogue: Catalogue | None = None) -> Check:
    if not installed:
        return Check("db-catalogue", WARN, "no complete database to compare with the catalogue",
                     hints.catalogue_hint([]))
    catalogue = catalogue or load_catalogue()
    found = [_catalogue_state(db, catalogue) for db in installed]
    worst = FAIL if any(s == FAIL for s, _ in found) else WARN if any(s == WARN for s, _ in found) else PASS
    detail = "; ".join(text for _, text in found)
    if worst == PASS:
        return Check("db-catalogue", PASS, f"catalogue versions: {detail}")
    return Check("db-catalogue", worst, detail, hints.catalogue_hint([]))
