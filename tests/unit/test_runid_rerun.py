"""``rerun_of`` in the run id: a request without it hashes exactly as before the field existed
(the ids below were computed by the run-id code of the commit before it, so a submitted run
still finds its run), and each rerun of a run gets an id of its own."""

from __future__ import annotations

import pytest

from foldstack.core.fasta import parse_fasta
from foldstack.core.request import RunRequest
from foldstack.core.runid import RUN_ID_PATTERN, make_run_id

SEQ = "MKTAYIAKQRQISFVKSHFSRQ"
RECORDS = parse_fasta(f">b\n{SEQ}\n>a\n{SEQ[::-1]}\n")
BASE = {"inputs": ["s3://b/in/x.fa"], "output_uri": "s3://b/out"}

# (request, its run id before rerun_of existed)
PINNED = [
    ({**BASE, "engine": "esmfold"}, "a-2-249913fb2d47f7d3"),
    ({**BASE, "engine": "alphafold2", "owner": "lab", "db_versions": {"uniref90": "2024_01"}, "num_models": 2,
      "num_seeds": 1, "relax": "all"}, "lab-2-96cf247fb86e242a"),
    ({**BASE, "engine": "alphafold2", "preset": "multimer"}, "a-2-34c5a084316bda6f"),
]


@pytest.mark.parametrize(("raw", "run_id"), PINNED)
def test_a_request_without_rerun_of_keeps_its_run_id(raw, run_id):
    assert make_run_id(RunRequest.model_validate(raw), RECORDS) == run_id
    assert make_run_id(RunRequest.model_validate({**raw, "rerun_of": None}), RECORDS) == run_id


def test_each_rerun_has_a_run_id_of_its_own():
    raw, run_id = PINNED[0]
    ids = [make_run_id(RunRequest.model_validate({**raw, "rerun_of": label}), RECORDS)
           for label in (run_id, f"{run_id}.2", f"{run_id}.3")]
    assert len({run_id, *ids}) == 4 and all(RUN_ID_PATTERN.fullmatch(i) for i in ids)
    assert make_run_id(RunRequest.model_validate({**raw, "rerun_of": run_id}), RECORDS) == ids[0]  # deterministic


@pytest.mark.parametrize("bad", ["", "a.0", "a.02", "a/b", "a.2.3", "x" * 81])
def test_rerun_of_names_a_run_id_and_which_rerun(bad):
    with pytest.raises(ValueError):
        RunRequest.model_validate({**BASE, "engine": "esmfold", "rerun_of": bad})
