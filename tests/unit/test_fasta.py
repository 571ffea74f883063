import pytest

from foldstack.core.errors import InputValidationError
from foldstack.core.fasta import FastaLimits, parse_fasta

SEQ = "MKTAYIAKQRQISFVKSHFSRQ"


def rejects(data, code, line=None, **limits):
    with pytest.raises(InputValidationError) as info:
        parse_fasta(data, source="in.fasta", limits=FastaLimits(**limits))
    assert info.value.code == code, str(info.value)
    if line is not None:
        assert info.value.details["line"] == line
        assert f"line {line}" in str(info.value)
    return info.value


def test_normalises_legitimate_variants_identically():
    canonical = parse_fasta(f">a desc\n{SEQ}\n>b\n{SEQ}\n")
    variants = [
        f"\ufeff>a desc\r\n{SEQ.lower()}\r\n>b\r\n{SEQ}*\r\n",
        f"\n\n>a desc\n{SEQ[:10]}\n{SEQ[10:]}\n\n\n>b\n{SEQ[:5]} {SEQ[5:]}\n",
    ]
    for text in variants:
        got = parse_fasta(text)
        assert [(r.id, r.chains, r.description) for r in got] == [
            (r.id, r.chains, r.description) for r in canonical
        ]


def test_multimer_chains_split_and_checksum_stable():
    (rec,) = parse_fasta(f">cplx\n{SEQ}:{SEQ[:12]}\n")
    assert rec.chains == (SEQ, SEQ[:12])
    assert rec.length == len(SEQ) + 12
    assert rec.sequence == f"{SEQ}:{SEQ[:12]}"
    assert len(rec.sha256) == 64
    assert parse_fasta(rec.to_fasta())[0].sha256 == rec.sha256


@pytest.mark.parametrize(
    "data, code, line",
    [
        ("", "empty_input", None),
        ("\n\n", "empty_input", None),
        (f"{SEQ}\n>a\n{SEQ}\n", "sequence_before_header", 1),
        (">a\n>b\nMKTAYIAKQR\n", "empty_record", 1),
        (f">a\n{SEQ}\n>a\n{SEQ}\n", "duplicate_id", 3),
        (f">A\n{SEQ}\n>a\n{SEQ}\n", "duplicate_id", 3),
        (f">../etc\n{SEQ}\n", "unsafe_id", 1),
        (f">a;rm -rf\n{SEQ}\n", "unsafe_id", 1),
        (f">\n{SEQ}\n", "empty_id", 1),
        (f">manifest.json\n{SEQ}\n", "reserved_id", 1),
        (">a\nMKT-AYIAKQRQ\n", "gap_character", 1),
        (">a\nMKT*AYIAKQRQ\n", "internal_stop", 1),
        (">a\nMKT1AYIAKQRQ\n", "digit_in_sequence", 1),
        (">a\nMKTUAYIAKQRQ\n", "invalid_residue", 1),
        (">a\nMKTA\x00YIAKQRQ\n", "control_character", 2),
        (">a\nMKTАYIAKQRQ\n", "non_ascii", 2),  # Cyrillic A homoglyph
        (f">a\n{SEQ}::{SEQ}\n", "empty_chain", 1),
        (">a\nMKT\n", "too_short", 1),
        (f">a\n{'A' * 2501}\n", "too_long", 1),
    ],
)
def test_rejects_with_code_and_line(data, code, line):
    err = rejects(data, code, line)
    assert "in.fasta" in str(err)


def test_binary_and_compressed_and_size_limits():
    rejects(b"\x1f\x8b\x08\x00garbage", "compressed_input")
    rejects(b">a\n\xff\xfe\xfa\n", "binary_input", 2)
    rejects(f">a\n{SEQ}\n".encode() * 10, "too_large", max_bytes=50)


def test_record_count_limit_stops_early():
    many = "".join(f">r{i}\nMKTAYIAKQRQ\n" for i in range(1_000))
    err = rejects(many, "too_many_records", max_records=100)
    assert err.details["line"] == 201


# -- database headers (UniProt, NCBI): the id is the accession -------------------------------------


@pytest.mark.parametrize(
    "header, rid",
    [
        ("sp|P19841|LUXC_PHOPO Acyl-CoA reductase", "P19841"),
        ("tr|A0A023GPI8|A0A023GPI8_CANAL Lectin", "A0A023GPI8"),
        ("sp|P19841-2|LUXC_PHOPO Isoform 2", "P19841-2"),
        ("SP|p19841|x", "p19841"),
        ("ref|NP_000509.1|", "NP_000509.1"),
        ("ref|NP_000509.1| hemoglobin subunit beta", "NP_000509.1"),
        ("gb|AAA35605.1|", "AAA35605.1"),
        ("emb|CAA25757.1|", "CAA25757.1"),
        ("dbj|BAA00001.1|", "BAA00001.1"),
        ("lcl|my_seq", "my_seq"),
        ("gi|4504349|ref|NP_000509.1| hemoglobin", "NP_000509.1"),
        ("gi|4504349", "4504349"),
        ("gnl|mydb|seq42", "seq42"),
        ("pdb|1ABC|A", "1ABC_A"),
        ("sp|P1:2|X", "P1_2"),  # characters outside the id alphabet become '_'
        ("sp|../x|y", "x"),  # leading characters that are not letters or digits are dropped
    ],
)
def test_database_headers_use_the_accession_as_id(header, rid):
    (rec,) = parse_fasta(f">{header}\n{SEQ}\n")
    assert rec.id == rid
    assert rec.description.startswith(header.split(" ", 1)[0])  # the whole header is kept
    again = parse_fasta(rec.to_fasta())  # and round-trips to the same record
    assert [(r.id, r.chains, r.description) for r in again] == [(rec.id, rec.chains, rec.description)]


@pytest.mark.parametrize("header, code", [
    ("sp||HBA_HUMAN", "unsafe_id"), ("ref|..|", "unsafe_id"), ("a|b", "unsafe_id"), ("xx|P1|q", "unsafe_id"),
    ("sp|MSA|x", "reserved_id"),
])
def test_database_headers_without_a_usable_accession_are_rejected(header, code):
    rejects(f">{header}\n{SEQ}\n", code, 1)


def test_two_headers_with_one_accession_are_duplicates_naming_both():
    err = rejects(f">sp|P19841|LUXC_PHOPO a\n{SEQ}\n>tr|P19841|LUXC_X b\n{SEQ[::-1]}\n", "duplicate_id", 3)
    assert "'P19841' (from 'tr|P19841|LUXC_X')" in str(err) and "('sp|P19841|LUXC_PHOPO')" in str(err)
    assert err.details["record"] == "P19841"
    rejects(f">P19841\n{SEQ}\n>sp|p19841|LUXC_PHOPO\n{SEQ}\n", "duplicate_id", 3)


# -- nucleotide sequences -------------------------------------------------------------------------

DNA = "ATGGCTAGCAAAGGAGAAGAACTTTTCACTGGAGTTGTCCCAATTCTTG"


@pytest.mark.parametrize("seq", [
    DNA, DNA.lower(), DNA.replace("T", "U"), DNA[:30] + "NNNN" + DNA[30:], f"{SEQ}:{DNA}",
    DNA[:18] + "RY" + DNA[18:],  # 90 % or more A/C/G/T/U/N: a few ambiguity codes do not hide it
    DNA[:20],  # the shortest that counts: 20 residues
])
def test_nucleotide_sequences_are_named_as_such(seq):
    err = rejects(f">nt\n{seq}\n", "nucleotide_sequence", 1)
    assert "translate it first" in str(err) and err.details["record"] == "nt"


@pytest.mark.parametrize("seq", [
    DNA[:19],  # too short to tell
    "A" * 40, "G" * 30, "AC" * 20,  # homopolymers and two-letter repeats are ambiguous (poly-Ala is a protein)
    DNA[:17] + "MKL",  # 85 % nucleotide letters: below the 90 % line
    SEQ, "ACDEFGHIKLMNPQRSTVWY" * 3,
])
def test_proteins_and_ambiguous_chains_are_not_nucleotides(seq):
    assert parse_fasta(f">p\n{seq}\n", limits=FastaLimits(min_chain_length=1))


def test_the_nucleotide_check_comes_before_residue_and_length_checks():
    rejects(f">rna\n{DNA.replace('T', 'U')}\n", "nucleotide_sequence", 1)  # not 'selenocysteine'
    rejects(f">long\n{DNA * 60}\n", "nucleotide_sequence", 1)  # not 'too_long'
    rejects(f">gb\n        1 {DNA[:10].lower()} {DNA[10:20].lower()} {DNA[20:30].lower()}\n",
            "nucleotide_sequence", 1)  # GenBank numbering: not 'digit_in_sequence'
