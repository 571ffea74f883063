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
