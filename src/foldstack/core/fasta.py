"""FASTA parsing and validation: the one place that decides what input gets in.

Accepted and normalised (identically in the client, the Lambda and local mode):
  * a UTF-8 byte-order mark at the start; CRLF or CR line endings;
  * blank lines anywhere; sequences wrapped over several lines;
  * spaces and tabs inside sequence lines (removed);
  * lowercase residues (upper-cased);
  * one terminal `*` per chain (removed);
  * multimer complexes as one record whose chains are joined by `:`;
  * UniProt and NCBI style headers (see "Ids from database headers" below).
Everything else is rejected with a stable `code`, the source, the line and the record.

Ids from database headers
-------------------------
A record's id is the header's first word (up to the first space). Ids are 1-64
characters of letters, digits, `.`, `_` and `-`, starting with a letter or digit, because
they name folders and files. Headers pasted from UniProt or NCBI carry `|`-separated
fields instead; when the first field is one of these database tags (any case) the id is
taken from the accession:

  * `sp|P19841|LUXC_PHOPO Acyl-CoA reductase`  -> `P19841`    (UniProtKB/Swiss-Prot)
  * `tr|A0A023GPI8|A0A023GPI8_CANAL ...`        -> `A0A023GPI8` (UniProtKB/TrEMBL)
  * `sp|P19841-2|LUXC_PHOPO` (an isoform)       -> `P19841-2`
  * `ref|NP_000509.1|`, and likewise `gb`, `emb`, `dbj`, `pir`, `prf`, `tpg`, `tpe`,
    `tpd`, `lcl`                                -> the second field, `NP_000509.1`
  * `gi|4504349|ref|NP_000509.1|`               -> `NP_000509.1` (the accession after the
    gi number; `gi|4504349` alone -> `4504349`)
  * `gnl|db|ident`                              -> `ident` (the third field)
  * `pdb|1ABC|A`                                -> `1ABC_A` (entry and chain)

The accession is then made safe: every character outside the id alphabet becomes `_`,
leading characters that are not a letter or digit are dropped, and it is cut at 64
characters. The whole original header is kept as the record's description. Any other
first word containing `|` (`a|b`, `xx|P1|...`) is rejected as `unsafe_id`. Two records
whose ids (derived or not) are equal ignoring case are rejected as `duplicate_id`, naming
both headers.

Nucleotide sequences
--------------------
A chain of at least 20 residues of which at least 90 % are `A`, `C`, `G`, `T`, `U` or `N`,
using at least three different bases, is rejected as `nucleotide_sequence`: it is almost
certainly DNA or RNA, and folding it as a protein (alanine, cysteine, glycine,
threonine...) gives a meaningless structure while still costing GPU time. Translate it
first. Homopolymers and two-letter repeats (`AAAA...`, `ACAC...`) are ambiguous (poly-Ala
is a protein) and are not rejected by this rule.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from foldstack.core.errors import InputValidationError

AMINO_ACIDS = frozenset("ACDEFGHIKLMNPQRSTVWY")
ALPHABET = AMINO_ACIDS | {"X"}
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Names that would collide with files foldstack writes next to the per-target folders.
RESERVED_IDS = frozenset({"manifest.json", "input", "msa", "predict"})
# UniProt/NCBI FASTA header tags whose second field is the accession (see the docstring).
ACCESSION_TAGS = frozenset({"sp", "tr", "ref", "gb", "emb", "dbj", "pir", "prf", "tpg", "tpe", "tpd", "lcl"})
_UNSAFE_ID_CHAR = re.compile(r"[^A-Za-z0-9_.-]")
NUCLEOTIDES = frozenset("ACGTUN")
NUCLEOTIDE_MIN_RESIDUES = 20
NUCLEOTIDE_FRACTION = 0.9
NUCLEOTIDE_MIN_BASES = 3  # distinct A/C/G/T/U: fewer is a homopolymer or a repeat, ambiguous
GZIP_MAGIC = b"\x1f\x8b"
_ALLOWED_CONTROL = {"\t", "\n", "\r"}
_EXPLAIN_RESIDUE = {
    "-": ("gap_character", "aligned input is not accepted; remove '-' and '.' gap characters"),
    ".": ("gap_character", "aligned input is not accepted; remove '-' and '.' gap characters"),
    "*": ("internal_stop", "a stop '*' is allowed only at the end of a chain"),
    "U": ("invalid_residue", "selenocysteine 'U' is not supported; replace it with 'C'"),
    "O": ("invalid_residue", "pyrrolysine 'O' is not supported; replace it with 'K'"),
    "B": ("invalid_residue", "ambiguous 'B' is not supported; use 'D', 'N' or 'X'"),
    "Z": ("invalid_residue", "ambiguous 'Z' is not supported; use 'E', 'Q' or 'X'"),
    "J": ("invalid_residue", "ambiguous 'J' is not supported; use 'I', 'L' or 'X'"),
}


class FastaLimits(BaseModel):
    """Bounds on one request's input. Defaults suit the `large` GPU size class."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_records: int = Field(default=10_000, gt=0)
    min_chain_length: int = Field(default=10, ge=1)
    max_residues: int = Field(default=2_500, gt=0)  # per record, all chains together
    max_chains: int = Field(default=20, gt=0)


@dataclass(frozen=True, slots=True)
class FastaRecord:
    """One validated, normalised record (a monomer or a `:`-joined complex)."""

    id: str
    chains: tuple[str, ...]
    description: str = ""
    source: str = ""
    line: int = 0

    @property
    def sequence(self) -> str:
        return ":".join(self.chains)

    @property
    def length(self) -> int:
        return sum(len(c) for c in self.chains)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sequence.encode("ascii")).hexdigest()

    def to_fasta(self) -> str:
        header = f">{self.id} {self.description}".rstrip()
        return f"{header}\n{self.sequence}\n"


def validate_id(record_id: str, *, source: str, line: int) -> str:
    if not record_id:
        raise InputValidationError(
            "header has no id", code="empty_id", source=source, line=line,
            hint="write the id right after '>', e.g. '>P69905 Hemoglobin alpha'",
        )
    if not ID_PATTERN.fullmatch(record_id):
        raise InputValidationError(
            f"id {record_id!r} is not allowed", code="unsafe_id", source=source, line=line,
            hint="ids are 1-64 characters of letters, digits, '.', '_' and '-', starting with a "
            "letter or digit; UniProt/NCBI headers such as 'sp|P69905|HBA_HUMAN' are read as their "
            "accession ('P69905')",
        )
    if record_id.lower() in RESERVED_IDS:
        raise InputValidationError(
            f"id {record_id!r} is reserved", code="reserved_id", source=source, line=line,
            hint="choose another id",
        )
    return record_id


def accession_id(word: str) -> str | None:
    """The id a UniProt/NCBI-style header word (`sp|P19841|LUXC_PHOPO`) maps to, by the
    rule in the module docstring; None when `word` is not such a header (no `|`, or an
    unknown first field). The result may still be empty or reserved: `validate_id` says so."""
    fields = word.split("|")
    if len(fields) < 2:
        return None
    tag = fields[0].lower()
    if tag == "gi":
        if len(fields) >= 4 and fields[2].lower() in ACCESSION_TAGS | {"pdb", "gnl"}:
            return accession_id("|".join(fields[2:]))
        accession = fields[1]
    elif tag in ACCESSION_TAGS:
        accession = fields[1]
    elif tag == "gnl":
        accession = fields[2] if len(fields) >= 3 else ""
    elif tag == "pdb":
        accession = "_".join(f for f in fields[1:3] if f)
    else:
        return None
    safe = _UNSAFE_ID_CHAR.sub("_", accession)
    while safe and not safe[0].isalnum():
        safe = safe[1:]
    return safe[:64]


def header_id(word: str, *, source: str, line: int) -> str:
    """The record id of a header's first word: the word itself, or the accession of a
    UniProt/NCBI-style header; validated either way."""
    derived = accession_id(word)
    if derived is None:
        return validate_id(word, source=source, line=line)
    if not derived:
        raise InputValidationError(
            f"header {word!r} has no usable accession", code="unsafe_id", source=source, line=line,
            hint="write an id right after '>', e.g. '>P69905 Hemoglobin alpha'",
        )
    return validate_id(derived, source=source, line=line)


def _nucleotide_check(chain: str, index: int, *, record_id: str, source: str, line: int) -> None:
    residues = [c for c in chain if c.isalpha()]
    if len(residues) < NUCLEOTIDE_MIN_RESIDUES:
        return
    bases = sum(c in NUCLEOTIDES for c in residues)
    if bases < NUCLEOTIDE_FRACTION * len(residues) or len(set(residues) & set("ACGTU")) < NUCLEOTIDE_MIN_BASES:
        return
    raise InputValidationError(
        f"chain {index} looks like a nucleotide sequence ({100 * bases // len(residues)}% of its "
        f"{len(residues)} residues are A/C/G/T/U/N)", code="nucleotide_sequence", source=source,
        record=record_id, line=line,
        hint="translate it first; foldstack folds proteins, and DNA folded as protein is meaningless",
    )


def normalise_chains(
    raw: str, *, record_id: str, source: str, line: int, limits: FastaLimits
) -> tuple[str, ...]:
    """Split on ':' and check each chain; `raw` has whitespace already removed."""
    if not raw:
        raise InputValidationError(
            "record has no sequence", code="empty_record", source=source, record=record_id, line=line,
            hint="add the sequence on the lines after the header, or remove the header",
        )
    chains = []
    for index, chain in enumerate(raw.upper().split(":"), start=1):
        if chain.endswith("*"):
            chain = chain[:-1]
        if not chain:
            raise InputValidationError(
                f"chain {index} is empty", code="empty_chain", source=source, record=record_id,
                line=line, hint="separate complex chains with a single ':' and no trailing ':'",
            )
        _nucleotide_check(chain, index, record_id=record_id, source=source, line=line)
        bad = next((c for c in chain if c not in ALPHABET), None)
        if bad is not None:
            position = chain.index(bad) + 1
            code, hint = _EXPLAIN_RESIDUE.get(
                bad,
                ("invalid_residue", "use the 20 standard amino acids (one-letter codes) or 'X'"),
            )
            if bad.isdigit():
                code, hint = "digit_in_sequence", "remove numbering from sequence lines"
            raise InputValidationError(
                f"chain {index} has {bad!r} at position {position}", code=code, source=source,
                record=record_id, line=line, hint=hint,
            )
        if len(chain) < limits.min_chain_length:
            raise InputValidationError(
                f"chain {index} has {len(chain)} residues; the minimum is {limits.min_chain_length}",
                code="too_short", source=source, record=record_id, line=line,
            )
        chains.append(chain)
    if len(chains) > limits.max_chains:
        raise InputValidationError(
            f"{len(chains)} chains; the maximum is {limits.max_chains}", code="too_many_chains",
            source=source, record=record_id, line=line,
        )
    total = sum(len(c) for c in chains)
    if total > limits.max_residues:
        raise InputValidationError(
            f"{total} residues; the maximum is {limits.max_residues}", code="too_long",
            source=source, record=record_id, line=line, hint="split the input or fold a domain",
        )
    return tuple(chains)


def _decode(data: bytes, source: str, limits: FastaLimits) -> str:
    if len(data) > limits.max_bytes:
        raise InputValidationError(
            f"file is {len(data)} bytes; the maximum is {limits.max_bytes}", code="too_large",
            source=source, hint="split it into several requests",
        )
    if data.startswith(GZIP_MAGIC):
        raise InputValidationError(
            "compressed input is not accepted", code="compressed_input", source=source,
            hint="decompress the file first",
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputValidationError(
            "file is not UTF-8 text", code="binary_input", source=source, line=line,
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_characters(line_text: str, *, source: str, line: int) -> None:
    for ch in line_text:
        if ch.isascii() and ch.isprintable():
            continue
        if ch in _ALLOWED_CONTROL:
            continue
        if ch.isascii() or not ch.isprintable():
            raise InputValidationError(
                f"control character U+{ord(ch):04X}", code="control_character", source=source,
                line=line, hint="the file must be plain text",
            )
        raise InputValidationError(
            f"non-ASCII character {ch!r} (U+{ord(ch):04X})", code="non_ascii", source=source,
            line=line, hint="FASTA headers and sequences must be plain ASCII",
        )


def parse_fasta(
    data: bytes | str, *, source: str = "<input>", limits: FastaLimits | None = None
) -> list[FastaRecord]:
    """Parse and validate a whole FASTA file; raise on the first problem."""
    limits = limits or FastaLimits()
    if isinstance(data, str):
        data = data.encode("utf-8")
    text = _decode(data, source, limits)
    records: list[FastaRecord] = []
    seen: dict[str, tuple[int, str]] = {}  # lower-case id -> (line, header word)
    header: tuple[str, str, int] | None = None
    parts: list[str] = []

    def finish() -> None:
        if header is None:
            return
        rid, desc, hline = header
        chains = normalise_chains("".join(parts), record_id=rid, source=source, line=hline, limits=limits)
        records.append(FastaRecord(id=rid, chains=chains, description=desc, source=source, line=hline))

    for lineno, raw_line in enumerate(text.split("\n"), start=1):
        check_characters(raw_line, source=source, line=lineno)
        stripped = raw_line.strip()
        if not stripped:
            continue
        if stripped.startswith(">"):
            finish()
            if len(records) >= limits.max_records:
                raise InputValidationError(
                    f"more than {limits.max_records} records", code="too_many_records", source=source,
                    line=lineno, hint="split the input; use submit_many for large campaigns",
                )
            word, _, desc = stripped[1:].strip().partition(" ")
            rid = header_id(word, source=source, line=lineno)
            if rid != word:  # derived from a database header: keep the header as description
                desc = f"{word} {desc.strip()}"
            key = rid.lower()
            if key in seen:
                first_line, first_word = seen[key]
                shown = f"{rid!r}" + ("" if word == rid else f" (from {word!r})")
                first = "" if first_word.lower() == key else f" ({first_word!r})"
                raise InputValidationError(
                    f"id {shown} repeats the record at line {first_line}{first}", code="duplicate_id",
                    source=source, record=rid, line=lineno,
                    hint="ids must be unique (case-insensitive); UniProt/NCBI headers use their accession",
                )
            seen[key] = (lineno, word)
            header, parts = (rid, desc.strip(), lineno), []
        elif header is None:
            raise InputValidationError(
                "sequence before the first '>' header", code="sequence_before_header",
                source=source, line=lineno, hint="start each record with a '>id' line",
            )
        else:
            parts.append(stripped.replace(" ", "").replace("\t", ""))
    finish()
    if not records:
        raise InputValidationError(
            "no FASTA records found", code="empty_input", source=source,
            hint="a record is a '>id' line followed by sequence lines",
        )
    return records


def check_unique(records: Iterable[FastaRecord]) -> None:
    """Ids must be unique across all inputs of a request, not only within one file."""
    seen: dict[str, FastaRecord] = {}
    for rec in records:
        key = rec.id.lower()
        if key in seen:
            first = seen[key]
            raise InputValidationError(
                f"id {rec.id!r} also appears in {first.source} line {first.line}", code="duplicate_id",
                source=rec.source, record=rec.id, line=rec.line, hint="ids must be unique across inputs",
            )
        seen[key] = rec
