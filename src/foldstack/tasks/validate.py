"""Validate Input: everything a run needs checked before anything is written."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from foldstack import storage
from foldstack.core.errors import InputValidationError
from foldstack.core.fasta import (
    FastaLimits,
    FastaRecord,
    check_characters,
    check_unique,
    normalise_chains,
    parse_fasta,
)
from foldstack.core.fasta import validate_id as check_id
from foldstack.core.request import InlineRecord, RunRequest
from foldstack.core.runid import RUN_ID_PATTERN, make_run_id
from foldstack.core.targets import SizeClass, Target, plan_targets
from foldstack.core.uris import parse_uri, require_under

Reader = Callable[[str, int], bytes]


def parse_request(raw: Mapping[str, Any] | RunRequest) -> RunRequest:
    if isinstance(raw, RunRequest):
        return raw
    try:
        return RunRequest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()
        )
        raise InputValidationError(f"invalid run request: {problems}", code="invalid_request") from None


def _inline_record(rec: InlineRecord, index: int, limits: FastaLimits) -> FastaRecord:
    source = f"inputs[{index}]"
    check_characters(rec.id, source=source, line=1)
    check_characters(rec.sequence, source=source, line=1)
    rid = check_id(rec.id, source=source, line=1)
    raw = rec.sequence.replace(" ", "").replace("\t", "").replace("\r", "").replace("\n", "")
    chains = normalise_chains(raw, record_id=rid, source=source, line=1, limits=limits)
    return FastaRecord(id=rid, chains=chains, source=source, line=1)


def _read_limited(uri: str, limits: FastaLimits) -> bytes:
    data = storage.read_bytes(uri, max_bytes=limits.max_bytes)
    if len(data) > limits.max_bytes:
        raise InputValidationError(
            f"file is larger than {limits.max_bytes} bytes", code="too_large", source=uri,
            hint="split it into several requests",
        )
    return data


def load_records(
    request: RunRequest,
    *,
    allowed_input_prefixes: tuple[str, ...],
    limits: FastaLimits,
    reader: Reader | None = None,
) -> list[FastaRecord]:
    """Read and validate every input; check all URIs before reading any."""
    read = reader or (lambda uri, _max: _read_limited(uri, limits))
    uris = [i for i in request.inputs if isinstance(i, str)]
    for uri in uris:
        parse_uri(uri)
        require_under(uri, allowed_input_prefixes, what="input")
    records: list[FastaRecord] = []
    for index, item in enumerate(request.inputs):
        if isinstance(item, InlineRecord):
            records.append(_inline_record(item, index, limits))
        else:
            records.extend(parse_fasta(read(item, limits.max_bytes), source=item, limits=limits))
        if len(records) > limits.max_records:
            raise InputValidationError(
                f"more than {limits.max_records} records across inputs", code="too_many_records",
                hint="split the request; use submit_many for large campaigns",
            )
    check_unique(records)
    return records


def validate_run(
    raw_request: Mapping[str, Any] | RunRequest,
    *,
    allowed_input_prefixes: tuple[str, ...],
    allowed_output_prefixes: tuple[str, ...],
    size_classes: Mapping[str, SizeClass],
    limits: FastaLimits,
    run_id: str | None = None,
    reader: Reader | None = None,
) -> tuple[RunRequest, list[FastaRecord], list[Target], str]:
    """The whole check. Returns (request, records, targets, run_id); writes nothing."""
    request = parse_request(raw_request)
    require_under(request.output_uri, allowed_output_prefixes, what="output_uri")
    records = load_records(
        request, allowed_input_prefixes=allowed_input_prefixes, limits=limits, reader=reader
    )
    targets = plan_targets(records, request, size_classes)
    expected = make_run_id(request, records)
    if run_id is not None and run_id != expected:
        if not RUN_ID_PATTERN.fullmatch(run_id):
            raise InputValidationError(f"run id {run_id!r} is malformed", code="run_id_mismatch")
        raise InputValidationError(
            f"run id {run_id!r} does not match the request (expected {expected!r})",
            code="run_id_mismatch", hint="let the client compute the run id",
        )
    return request, records, targets, expected
