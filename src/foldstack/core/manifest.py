"""The run manifest: what Collect Outputs publishes last at ``<output_uri>/<run_id>/manifest.json``.

Its presence means the run's outputs are complete. Collect Outputs writes it through
:class:`Manifest`; the client, the CLI and the cost code read it through
:func:`load_manifest`, never as a bare dict.

Compatibility: ``schema_version`` is bumped when a field changes meaning or a required
field appears. A reader accepts every version in ``READABLE_VERSIONS`` (older ones are
upgraded on load); a newer or unknown version fails with a :class:`ManifestVersionError`
that names the foldstack version which wrote the file and the one reading it. Unknown
extra keys are kept (``extra="allow"``), so a newer foldstack that only *adds* fields
stays readable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foldstack.core.errors import FoldstackError
from foldstack.core.request import RunRequest

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
READABLE_VERSIONS = (1,)

_OPEN = ConfigDict(extra="allow")


class ManifestError(FoldstackError):
    """A manifest that cannot be read (not JSON, or not a manifest)."""

    code = "manifest_invalid"


class ManifestVersionError(ManifestError):
    """A manifest written by a foldstack whose schema this one does not know."""

    code = "manifest_version"


class PublishedFile(BaseModel):
    """One published file, relative to ``<run_id>/<target>/``."""

    model_config = _OPEN
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class StepResources(BaseModel):
    """What a step's process used (``resources`` of its done record, written by the step
    contract): peak resident memory and CPU time, its own and its tool subprocesses'."""

    model_config = _OPEN
    peak_rss_mib: float | None = None  # max(self, children): what the job needs
    cpu_seconds: float | None = None  # self + children, during the step
    self: dict[str, float] | None = None  # {"peak_rss_mib", "cpu_seconds"} of the step process
    children: dict[str, float] | None = None  # of the tools it ran (jackhmmer, hhblits, mmseqs)


# The keys of a step's done record that Collect Outputs copies into the target's
# ``provenance[<step>]`` (see StepProvenance).
STEP_PROVENANCE_KEYS = ("tool_versions", "timings", "resources", "ran_on", "build")


class StepProvenance(BaseModel):
    """What one step recorded in its done record (tool versions, timings, resources) plus,
    for the msa step, where its alignment came from and with which databases."""

    model_config = _OPEN
    tool_versions: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    resources: StepResources | None = None  # None: a cache hit (no job ran) or an older done record
    # where the job ran (done record's ran_on: queue, compute_environment, size_class, attempt,
    # job_id, availability_zone); None: no Batch job (a cache hit) or an older done record
    ran_on: dict[str, Any] | None = None
    # the code, image and job definition that ran the step, and for predict the weights it loaded
    # (foldstack.core.provenance: build_info, weights_identity); None: no job ran, or an older done record
    build: dict[str, Any] | None = None
    msa_cache: str | None = None  # "hit" | "miss" (msa step only)
    chain_cache: list[str] | None = None  # per chain: "hit" | "miss" | "off"
    db_preset: str | None = None  # msa step: full_dbs | reduced_dbs | colabfold
    databases: dict[str, str] | None = None  # msa step: {database name: version} it searched
    pairing: str | None = None  # msa step, multimers: "on (<database>)" or "off: <why>"


class TargetResult(BaseModel):
    """One target's published results: the validated target plus files, metrics,
    provenance per step and (an estimate) its cost."""

    model_config = _OPEN
    id: str
    length: int | None = None
    chains: int | None = None
    sha256: str | None = None
    size_class: str | None = None
    files: dict[str, PublishedFile] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    # None: the step did not run for this target (e.g. an MSA cache hit in a cost estimate)
    provenance: dict[str, StepProvenance | None] = Field(default_factory=dict)
    cost: dict[str, Any] | None = None

    @property
    def demo_weights(self) -> bool:
        return bool(self.metrics.get("demo_weights"))

    @property
    def mean_plddt(self) -> float | None:
        value = self.metrics.get("mean_plddt")
        return float(value) if isinstance(value, int | float) else None


# A run's outcome: every target folded, some failed within the request's failure budget
# (``max_failed_fraction``), or more failed than it allows (the run FAILED; what succeeded
# is still published).
Outcome = Literal["succeeded", "partial", "failed"]


class TargetFailure(BaseModel):
    """One target that did not fold: the step that failed, a stable code (``bad_input``,
    ``out_of_memory``, ``timeout``, ``inputs_not_ready``, ``crash``, ``job_failed``...), a
    one-line message and where its log is (a Batch job id and log stream, or a local log
    path). Written to ``failures`` in the manifest and to ``failures.tsv``."""

    model_config = _OPEN
    target: str
    step: str
    code: str
    message: str = ""
    job_id: str | None = None
    log: str | None = None


class Manifest(BaseModel):
    model_config = _OPEN
    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_at: str
    foldstack_version: str
    request: RunRequest
    targets: list[TargetResult]
    cost: dict[str, Any] = Field(default_factory=dict)
    # run-level files, relative to ``<run_id>/``: ``summary.tsv``, ``index.html``, ``assets/3Dmol-min.js`` (the
    # reports' viewer), ``structures/<target>.cif`` (each target's best model, for bulk download),
    # ``failures.tsv`` and ``<target>/target.json`` (each target's entry, its publish's marker)
    run_files: dict[str, PublishedFile] = Field(default_factory=dict)
    # absent in manifests written before runs could be partial: every target succeeded
    outcome: Outcome = "succeeded"
    failures: list[TargetFailure] = Field(default_factory=list)
    # what produced the run: the collecting code, images, job-definition revisions, weights and
    # every database version searched (foldstack.core.provenance.run_provenance; `foldstack rerun`
    # pins its databases); empty in manifests written before it existed
    provenance: dict[str, Any] = Field(default_factory=dict)

    def target(self, target_id: str) -> TargetResult:
        for t in self.targets:
            if t.id == target_id:
                return t
        raise KeyError(target_id)

    def summary_rows(self) -> list[dict[str, Any]]:
        """One :func:`summary_row` per target: the published ones, then the failed ones."""
        return [summary_row(t) for t in self.targets] + [failed_row(f) for f in self.failures]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with exactly the keys that were given (build it with every
        field set, as Collect Outputs does, and nothing is left out)."""
        return self.model_dump(mode="json", exclude_unset=True)


# ``summary.tsv`` at a run's root, `foldstack results RUN --tsv` and `Run.metrics()`: one
# row per target, these columns in this order (empty cell: not applicable or unknown).
SUMMARY_COLUMNS = ("target", "status", "engine", "length", "chains", "size_class", "mean_plddt", "ptm", "iptm",
                   "ranking_confidence", "max_pae", "msa_depth", "runtime_s", "cost_usd", "failure_code")


def summary_row(target: TargetResult, *, status: str = "succeeded", failure_code: str | None = None) -> dict[str, Any]:
    """One target's summary row (see :data:`SUMMARY_COLUMNS`)."""
    m, cost = target.metrics, target.cost or {}
    steps = cost.get("steps") if isinstance(cost.get("steps"), Mapping) else {}
    runtimes = [s.get("runtime_seconds") for s in steps.values() if isinstance(s, Mapping)]
    runtimes = [r for r in runtimes if isinstance(r, int | float)]
    return {"target": target.id, "status": status, "engine": m.get("engine"), "length": target.length,
            "chains": target.chains, "size_class": target.size_class, "mean_plddt": m.get("mean_plddt"),
            "ptm": m.get("ptm"), "iptm": m.get("iptm"), "ranking_confidence": m.get("ranking_confidence"),
            "max_pae": m.get("max_pae"), "msa_depth": m.get("msa_depth"),
            "runtime_s": round(sum(runtimes), 3) if runtimes else None, "cost_usd": cost.get("usd"),
            "failure_code": failure_code}


# What is known of a target that did not fold; Collect Outputs sets them on its TargetFailure.
FAILED_ROW_KNOWN = ("engine", "length", "chains", "size_class")


def failed_row(failure: TargetFailure) -> dict[str, Any]:
    """A failed target's summary row: status ``failed``, its failure code and what is known
    without a prediction (:data:`FAILED_ROW_KNOWN`, where the failure carries them)."""
    known = failure.model_extra or {}
    return {"target": failure.target, "status": "failed",
            **{k: known[k] for k in FAILED_ROW_KNOWN if known.get(k) is not None}, "failure_code": failure.code}


def _cell(v: Any) -> str:
    return "" if v is None else str(v).replace("\t", " ").replace("\n", " ")


def summary_tsv(rows: list[dict[str, Any]]) -> str:
    """``summary.tsv``: a header of :data:`SUMMARY_COLUMNS`, then one line per row."""
    lines = ["\t".join(SUMMARY_COLUMNS)]
    lines += ["\t".join(_cell(r.get(c)) for c in SUMMARY_COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


def failure_counts(failures: list[TargetFailure]) -> list[tuple[str, int]]:
    """``[(code, n), ...]``, most frequent first (then by code)."""
    counts: dict[str, int] = {}
    for f in failures:
        counts[f.code] = counts.get(f.code, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def count_text(failures: list[TargetFailure]) -> str:
    """``41 out_of_memory, 13 bad_input``."""
    return ", ".join(f"{n:,} {code}" for code, n in failure_counts(failures))


# ``failures.tsv`` at a run's root: one row per failed target (a header only when none failed).
FAILURE_COLUMNS = ("target", "step", "code", "message", "job_id", "log")
FAILURES_TSV = "failures.tsv"


def failures_tsv(failures: list[TargetFailure]) -> str:
    """``failures.tsv``: a header of :data:`FAILURE_COLUMNS`, then one line per failure."""
    lines = ["\t".join(FAILURE_COLUMNS)]
    lines += ["\t".join(_cell(getattr(f, c)) for c in FAILURE_COLUMNS) for f in failures]
    return "\n".join(lines) + "\n"


def execution_outcome(output: Any) -> str | None:
    """The ``outcome`` a fold execution's output reports (its RunSucceeded state: JSON text or
    the parsed dict), or None. A ``partial`` run can be retried: its failed targets only."""
    if isinstance(output, str):
        try:
            output = json.loads(output)
        except ValueError:
            return None
    value = output.get("outcome") if isinstance(output, dict) else None
    return value if isinstance(value, str) else None


def _this_version() -> str:
    from foldstack import __version__

    return __version__


def parse_manifest(raw: Mapping[str, Any], *, source: str = MANIFEST) -> Manifest:
    """A manifest dict → :class:`Manifest`, checking its schema version first."""
    if not isinstance(raw, Mapping):
        raise ManifestError(f"{source}: not a manifest (a JSON object was expected)")
    version = raw.get("schema_version")
    if version not in READABLE_VERSIONS:
        writer = raw.get("foldstack_version", "an unknown version")
        raise ManifestVersionError(
            f"{source}: written by foldstack {writer} (manifest schema {version!r}); this is foldstack "
            f"{_this_version()}, which reads schema {', '.join(map(str, READABLE_VERSIONS))}: "
            "upgrade foldstack to read it",
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ManifestError(f"{source}: {where}: {first['msg']}") from None


def load_manifest(data: bytes | str, *, source: str = MANIFEST) -> Manifest:
    """Bytes of a ``manifest.json`` → :class:`Manifest` (see :func:`parse_manifest`)."""
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise ManifestError(f"{source}: not valid JSON ({exc})") from None
    return parse_manifest(raw, source=source)
