"""Execution names of a run's attempts (foldstack.core.runid): `<run_id>` then
`<run_id>-a<N>`, always 1-80 of [A-Za-z0-9_-] (Step Functions), and the run id comes back
from any of them; make_run_id leaves room for the suffix whatever the label."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foldstack.core.fasta import FastaRecord
from foldstack.core.request import RunRequest
from foldstack.core.runid import (
    ATTEMPT_MAX,
    RUN_ID_MAX_WITH_ATTEMPTS,
    execution_name,
    make_run_id,
    parse_execution_name,
    run_id_of,
)

NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


class Many(list):
    """`n` records as make_run_id sees them (their count) without building them all."""

    def __init__(self, items: list[FastaRecord], n: int) -> None:
        super().__init__(items)
        self.n = n

    def __len__(self) -> int:
        return self.n


def records(n: int, first: str = "t") -> list[FastaRecord]:
    return [FastaRecord(id=f"{first}{i}", chains=("MKTAYIAKQR",), source="x", line=1) for i in range(n)]


# the label is the owner (1-64 of [A-Za-z0-9_.@-], first alphanumeric) or else the first record id (1-64 of
# [A-Za-z0-9._-]); the count is the number of records (up to the largest run, and beyond)
LABELS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(owner=st.one_of(st.none(), LABELS), first=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,60}", fullmatch=True),
       n=st.sampled_from([1, 2, 9, 10, 99, 10_000, 10**7]), attempt=st.integers(min_value=1, max_value=ATTEMPT_MAX))
@pytest.mark.slow
def test_every_attempt_of_every_run_id_is_a_valid_execution_name_that_parses_back(owner, first, n, attempt):
    request = RunRequest(inputs=("s3://b/in/x.fasta",), output_uri="s3://b/out", owner=owner)
    run_id = make_run_id(request, Many(records(1, first), n))
    assert len(run_id) <= RUN_ID_MAX_WITH_ATTEMPTS
    name = execution_name(run_id, attempt)
    assert NAME.fullmatch(name), name
    assert parse_execution_name(name) == (run_id, attempt) and run_id_of(name) == run_id
    assert (name == run_id) == (attempt == 1)


def test_the_suffix_and_its_limits():
    run_id = "alpha-2-0123456789abcdef"
    assert execution_name(run_id) == run_id and execution_name(run_id, 2) == f"{run_id}-a2"
    assert execution_name(run_id, 9999) == f"{run_id}-a9999"
    assert parse_execution_name(f"{run_id}-a17") == (run_id, 17)
    for not_an_attempt in (f"{run_id}-a1", f"{run_id}-a02", f"{run_id}-a", f"{run_id}-a12345", "junk-0"):
        assert parse_execution_name(not_an_attempt) == (not_an_attempt, 1)
    for attempt in (0, ATTEMPT_MAX + 1):
        with pytest.raises(ValueError):
            execution_name(run_id, attempt)
    with pytest.raises(ValueError, match="cannot take an attempt suffix"):
        execution_name("x" * 78, 2)  # a valid run id, but no room for -a2 within 80
    with pytest.raises(ValueError, match="cannot take an attempt suffix"):
        execution_name("looks-a5", 2)  # would read back as attempt 5 of "looks"
    with pytest.raises(ValueError):
        execution_name("a/b", 2)


def test_a_long_label_is_capped_and_existing_ids_do_not_change():
    long = RunRequest(inputs=("s3://b/in/x.fasta",), output_uri="s3://b/out", owner="x" * 64)
    assert make_run_id(long, records(3)).startswith("x" * 40 + "-3-")  # the slug's cap, as before
    short = RunRequest(inputs=("s3://b/in/x.fasta",), output_uri="s3://b/out", owner="lab")
    assert make_run_id(short, records(1)) == "lab-1-" + make_run_id(short, records(1)).rsplit("-", 1)[1]
