import os

import pytest

from foldstack.core.errors import AccessDeniedError, InputValidationError
from foldstack.core.fasta import parse_fasta
from foldstack.core.request import RunRequest
from foldstack.core.runid import RUN_ID_PATTERN, make_run_id
from foldstack.core.uris import is_under, join_under, parse_uri, require_under

SEQ = "MKTAYIAKQRQISFVKSHFSRQ"


def test_parse_uri_forms():
    assert parse_uri("s3://b/k/x.fa").bucket == "b"
    assert parse_uri("file:///tmp/x").key == "/tmp/x"
    assert parse_uri("rel/x").key == os.path.abspath("rel/x")


@pytest.mark.parametrize(
    "bad", ["s3://b/a/../x", "s3://b/a/%2e%2e/x", "s3://b/a//x", "/tmp/a/../b", "s3://b/a\\b",
            "s3://b/a\x00", "http://example.com/x", "s3:///k", ""],
)
def test_unsafe_uris_rejected(bad):
    with pytest.raises(InputValidationError):
        parse_uri(bad)


def test_join_under_refuses_escape():
    assert join_under("s3://b/scratch", "run", "input", "a.fasta") == "s3://b/scratch/run/input/a.fasta"
    for part in ("..", "../x", "/abs", "", "a/../../b"):
        with pytest.raises(InputValidationError):
            join_under("s3://b/scratch", part)


def test_prefix_containment_is_segment_wise(tmp_path):
    assert is_under("s3://b/in/x.fa", "s3://b/in")
    assert not is_under("s3://b/inx/x.fa", "s3://b/in")
    assert not is_under("s3://other/in/x.fa", "s3://b/in")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "link").symlink_to(tmp_path)  # a symlink out of the allowed dir
    assert not is_under(str(allowed / "link" / "x"), str(allowed))
    with pytest.raises(AccessDeniedError) as info:
        require_under("s3://b/private/x", ["s3://b/in"], what="input")
    assert "s3://b/in" in str(info.value)


def test_run_id_deterministic_and_spelling_independent():
    recs = parse_fasta(f">b\n{SEQ}\n>a\n{SEQ[::-1]}\n")
    req1 = RunRequest.model_validate({"inputs": ["s3://b/in/x.fa"], "output_uri": "s3://b/out", "engine": "esmfold"})
    req2 = RunRequest.model_validate({"engine": "esmfold", "output_uri": "s3://b/out/", "inputs": ["s3://b/in/y%20.fa"],
                                      "tags": {"project": "x"}})
    rid = make_run_id(req1, recs)
    assert RUN_ID_PATTERN.match(rid) and rid.startswith("a-2-")
    assert make_run_id(req2, list(reversed(recs))) == rid
    req3 = RunRequest.model_validate({"inputs": ["s3://b/in/x.fa"], "output_uri": "s3://b/out", "engine": "alphafold2"})
    assert make_run_id(req3, recs) != rid


def test_request_model_rules():
    req = RunRequest.model_validate({"inputs": ["s3://b/x"], "output_uri": "s3://b/o"})
    assert req.engine == "alphafold2" and req.msa_tool == "jackhmmer" and req.needs_msa
    with pytest.raises(ValueError):
        RunRequest.model_validate({"inputs": ["x"], "output_uri": "o", "engine": "esmfold", "msa_tool": "mmseqs2"})
    with pytest.raises(ValueError):
        RunRequest.model_validate({"inputs": ["x"], "output_uri": "o", "surprise": 1})
    with pytest.raises(ValueError):
        RunRequest.model_validate({"inputs": [], "output_uri": "o"})
