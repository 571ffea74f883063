"""FASTA rules, property-based: legitimate variants (lowercase, CRLF/CR, BOM, wrapped
lines, blank lines, one terminal '*', spaces in sequence lines) normalise identically;
every accepted input round-trips through `to_fasta()`; single bad characters are
rejected with their code and the record's line; arbitrary bytes never crash the parser.
Plus the big generated cases (a million tiny records, over the byte limit) and the
inline-record path, which must follow the same rules as files."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foldstack.core.errors import InputValidationError
from foldstack.core.fasta import ALPHABET, ID_PATTERN, RESERVED_IDS, FastaLimits, FastaRecord, parse_fasta
from foldstack.core.request import InlineRecord
from foldstack.tasks.validate import _inline_record

PROPS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
RESIDUES = "".join(sorted(ALPHABET))
KNOWN_CODES = {
    "empty_input", "sequence_before_header", "empty_record", "empty_chain", "duplicate_id", "empty_id",
    "unsafe_id", "reserved_id", "gap_character", "internal_stop", "digit_in_sequence", "invalid_residue",
    "control_character", "non_ascii", "binary_input", "compressed_input", "too_long", "too_short",
    "too_many_chains", "too_many_records", "too_large",
}

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,15}\Z").filter(lambda s: s.lower() not in RESERVED_IDS)
chain = st.text(alphabet=RESIDUES, min_size=10, max_size=90)
description = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=12).map(
    lambda s: s.replace(">", "x"))
descriptions = st.lists(description.filter(bool), max_size=3).map(" ".join)


@st.composite
def record_sets(draw) -> list[tuple[str, tuple[str, ...], str]]:
    chosen = draw(st.lists(ids, min_size=1, max_size=4, unique_by=str.lower))
    return [(rid, tuple(draw(st.lists(chain, min_size=1, max_size=3))), draw(descriptions)) for rid in chosen]


@st.composite
def variants(draw) -> dict:
    return {
        "bom": draw(st.booleans()),
        "newline": draw(st.sampled_from(["\n", "\r\n", "\r"])),
        "wrap": draw(st.one_of(st.none(), st.integers(1, 80))),
        "case": draw(st.sampled_from(["upper", "lower", "mixed"])),
        "blank": draw(st.integers(0, 3)),
        "star": draw(st.booleans()),
        "spaces": draw(st.booleans()),
        "indent": draw(st.sampled_from(["", " ", "\t", "  "])),
        "header_space": draw(st.booleans()),
        "final_newline": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def render(records, v) -> str:
    """One FASTA text for `records` in the spelling `v` (all legitimate variants)."""
    import random

    rng = random.Random(v["seed"])
    nl = v["newline"]
    out = ["\ufeff" if v["bom"] else ""]
    for i, (rid, chains, desc) in enumerate(records):
        if i:
            out.append(nl * v["blank"])
        gap = " " if v["header_space"] else ""
        out.append(f"{v['indent']}>{gap}{rid}{(' ' + desc) if desc else ''}{nl}")
        parts = [c + ("*" if v["star"] else "") for c in chains]
        seq = ":".join(parts)
        if v["case"] == "lower":
            seq = seq.lower()
        elif v["case"] == "mixed":
            seq = "".join(ch.lower() if rng.random() < 0.5 else ch for ch in seq)
        width = v["wrap"] or len(seq)
        lines = [seq[j:j + width] for j in range(0, len(seq), width)]
        for j, line in enumerate(lines):
            if v["spaces"] and len(line) > 2:
                k = rng.randrange(1, len(line))
                line = line[:k] + rng.choice([" ", "\t", "  "]) + line[k:]
            last = i == len(records) - 1 and j == len(lines) - 1
            out.append(f"{v['indent']}{line}{'' if last and not v['final_newline'] else nl}")
    return "".join(out)


def canonical(records) -> list[tuple[str, tuple[str, ...], str]]:
    return [(rid, tuple(c.upper() for c in chains), desc) for rid, chains, desc in records]


def as_tuples(parsed: list[FastaRecord]):
    return [(r.id, r.chains, r.description) for r in parsed]


@PROPS
@given(records=record_sets(), v=variants())
@pytest.mark.slow
def test_legitimate_variants_normalise_identically(records, v):
    text = render(records, v)
    for data in (text, text.encode("utf-8")):
        parsed = parse_fasta(data)
        assert as_tuples(parsed) == canonical(records)
    plain = parse_fasta("".join(f">{rid} {d}\n{':'.join(c)}\n" for rid, c, d in records))
    assert [r.sha256 for r in parse_fasta(text)] == [r.sha256 for r in plain]


@PROPS
@given(records=record_sets(), v=variants())
@pytest.mark.slow
def test_every_accepted_input_round_trips(records, v):
    parsed = parse_fasta(render(records, v))
    text = "".join(r.to_fasta() for r in parsed)
    again = parse_fasta(text)
    assert as_tuples(again) == as_tuples(parsed)
    assert "".join(r.to_fasta() for r in again) == text  # normalised form is a fixed point


@PROPS
@given(records=record_sets(), v=variants())
@pytest.mark.slow
def test_inline_records_normalise_like_files(records, v):
    limits = FastaLimits()
    for index, (rid, chains, _desc) in enumerate(records):
        body = render([(rid, chains, "")], {**v, "bom": False}).split(v["newline"], 1)[1]
        inline = _inline_record(InlineRecord(id=rid, sequence=body), index, limits)
        assert inline.chains == tuple(c.upper() for c in chains)


BAD = {
    "-": "gap_character", ".": "gap_character", "1": "digit_in_sequence", "9": "digit_in_sequence",
    "B": "invalid_residue", "U": "invalid_residue", "#": "invalid_residue", "*": "internal_stop",
    "\x00": "control_character", "\x07": "control_character", "\x1b": "control_character",
    "\u0410": "non_ascii", "\u0131": "non_ascii", "\uff21": "non_ascii",
}
LINE_OF_CHARACTER = {"control_character", "non_ascii"}  # character errors name the line itself


@PROPS
@given(records=record_sets(), which=st.integers(0, 3), bad=st.sampled_from(sorted(BAD)), data=st.data())
@pytest.mark.slow
def test_one_bad_character_is_rejected_with_code_and_line(records, which, bad, data):
    which %= len(records)
    lines, header_line, target_line = [], {}, None
    for i, (rid, chains, desc) in enumerate(records):
        header_line[i] = len(lines) + 1
        lines.append(f">{rid} {desc}".rstrip())
        seq = ":".join(chains)
        if i == which:
            pos = data.draw(st.integers(1, len(chains[0]) - 1))  # inside the first chain, not at its end
            seq = seq[:pos] + bad + seq[pos:]
            target_line = len(lines) + 1
        lines.append(seq)
    with pytest.raises(InputValidationError) as info:
        parse_fasta("\n".join(lines) + "\n")
    err = info.value
    assert err.code == BAD[bad]
    rid = records[which][0]
    if err.code in LINE_OF_CHARACTER:
        assert err.details["line"] == target_line
    else:
        assert err.details["line"] == header_line[which] and err.details["record"] == rid


@settings(max_examples=150, deadline=None, database=None)
@given(data=st.one_of(
    st.binary(max_size=600),
    st.text(alphabet=st.sampled_from(list(">\n\r\t :*-.ACDEFGHIKLMNPQRSTVWYXacdeB1 \x00\ufeffé")), max_size=600),
))
def test_arbitrary_input_is_accepted_consistently_or_rejected_cleanly(data):
    raw = data.encode("utf-8") if isinstance(data, str) else data
    n_lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
    try:
        parsed = parse_fasta(data, limits=FastaLimits(min_chain_length=1))
    except InputValidationError as err:
        assert err.code in KNOWN_CODES, err.code
        line = err.details.get("line")
        assert line is None or 1 <= line <= n_lines
        return
    for r in parsed:
        assert ID_PATTERN.fullmatch(r.id) and r.id.lower() not in RESERVED_IDS
        assert all(c and set(c) <= ALPHABET for c in r.chains)
    again = parse_fasta("".join(r.to_fasta() for r in parsed), limits=FastaLimits(min_chain_length=1))
    assert as_tuples(again) == as_tuples(parsed)


# -- generated big inputs ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_million_tiny_records_is_rejected_fast():
    data = b"".join(b">r%d\nACDEFGHIKL\n" % i for i in range(1_000_000))
    assert len(data) < FastaLimits().max_bytes
    start = time.perf_counter()
    with pytest.raises(InputValidationError) as info:
        parse_fasta(data)
    elapsed = time.perf_counter() - start
    print(f"\n1,000,000 tiny records ({len(data) / 1e6:.1f} MB): rejected in {elapsed:.2f} s")
    assert info.value.code == "too_many_records"
    assert info.value.details["line"] == 2 * FastaLimits().max_records + 1
    assert elapsed < 10


def test_a_million_tiny_records_through_the_local_handler(local_env):
    from tests.conftest import files_under
    from tests.reliability.helpers import DUMMY_RUN_ID, fasta_request, load_handler

    path = local_env["inputs"] / "million.fasta"
    path.write_bytes(b"".join(b">r%d\nACDEFGHIKL\n" % i for i in range(1_000_000)))
    with pytest.raises(InputValidationError) as info:
        load_handler("validate_input")({"run_id": DUMMY_RUN_ID,
                                        "request": fasta_request(str(path), str(local_env["outputs"]))})
    assert info.value.code == "too_many_records"
    assert files_under(local_env["scratch"]) == [] and files_under(local_env["outputs"]) == []


def test_over_the_default_byte_limit():
    limit = FastaLimits().max_bytes
    with pytest.raises(InputValidationError) as info:
        parse_fasta(b">a\n" + b"A" * limit)
    assert info.value.code == "too_large"


def test_one_megabyte_validates_quickly():
    """The benchmark (bench/bench_validate.py) reports the figure; this only guards
    against a pathological slowdown on a loaded CI machine."""
    seq = ("ACDEFGHIKLMNPQRSTVWY" * 125)[:2400]
    body = "".join(f">t{i} target {i}\n" + "\n".join(seq[j:j + 60] for j in range(0, len(seq), 60)) + "\n"
                   for i in range(430))
    data = body.encode()
    assert 1_000_000 <= len(data) <= 1_200_000
    start = time.perf_counter()
    records = parse_fasta(data)
    elapsed = time.perf_counter() - start
    assert len(records) == 430
    assert elapsed < 5


# -- inline records must follow the same rules as FASTA files (known gaps) ---------------------------

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"


def _inline(rid: str, seq: str) -> FastaRecord:
    return _inline_record(InlineRecord(id=rid, sequence=seq), 0, FastaLimits())


@pytest.mark.parametrize("seq", [
    SEQ.replace("I", "\u0131", 1),  # dotless i: .upper() -> 'I'
    SEQ.replace("S", "\u017f", 1),  # long s: .upper() -> 'S'
    "\ufb00" + SEQ,  # 'ff' ligature: .upper() -> 'FF'
], ids=["dotless-i", "long-s", "ff-ligature"])
def test_inline_homoglyphs_are_rejected(seq):
    with pytest.raises(InputValidationError):
        _inline("h", seq)


@pytest.mark.parametrize("ch", ["\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u2028", "\u3000", "\x0b", "\x0c"])
def test_inline_control_characters_are_rejected(ch):
    with pytest.raises(InputValidationError):
        _inline("c", SEQ[:10] + ch + SEQ[10:])


def test_inline_id_with_trailing_newline_is_rejected():
    with pytest.raises(InputValidationError):
        _inline("abc\n", SEQ)


def test_description_is_data_never_an_id():
    """Shell metacharacters and '../' in the description are kept verbatim as data; only
    the id (validated) is ever used in paths or job parameters."""
    rec = parse_fasta(f">safe_id $(rm -rf /) ../../etc `id` ; | &\n{SEQ}\n")[0]
    assert rec.id == "safe_id" and rec.description == "$(rm -rf /) ../../etc `id` ; | &"
