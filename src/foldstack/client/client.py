"""`Client`: submit, find and fetch foldstack runs, on AWS or on this machine.

    from foldstack.client import Client
    run = Client("prod").submit("proteins.fasta", engine="esmfold")
    run.wait(progress=True); run.download("results/")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from foldstack.client.aws import AwsApi, RetryPolicy, check_configured, session_for
from foldstack.client.backends import CloudBackend, Prepared
from foldstack.client.config import DEFAULT_WORKFLOW, ClientConfig, discover
from foldstack.client.display import CountBar
from foldstack.client.errors import NotInstalledError, RunNotFoundError
from foldstack.client.local_backend import LocalBackend
from foldstack.client.ratelimit import RateLimiter
from foldstack.client.run import Run, RunContext, RunSet
from foldstack.core.errors import InputValidationError
from foldstack.core.fasta import FastaLimits, FastaRecord, check_unique, normalise_chains, parse_fasta, validate_id
from foldstack.core.manifest import MANIFEST, Manifest
from foldstack.core.request import InlineRecord, RunRequest
from foldstack.core.uris import join_under
from foldstack.tasks.validate import parse_request

InputLike = str | Path | InlineRecord | FastaRecord | dict | tuple


def _as_inputs(inputs: InputLike | Iterable[InputLike]) -> list[str | InlineRecord]:
    single_pair = (isinstance(inputs, tuple) and len(inputs) == 2 and all(isinstance(x, str) for x in inputs)
                   and not str(inputs[1]).endswith((".fasta", ".fa", ".faa")))  # ("id", "SEQUENCE")
    if single_pair or isinstance(inputs, str | Path | InlineRecord | FastaRecord | dict):
        inputs = [inputs]
    out: list[str | InlineRecord] = []
    for item in inputs:
        if isinstance(item, Path):
            out.append(str(item))
        elif isinstance(item, str | InlineRecord):
            out.append(item)
        elif isinstance(item, FastaRecord):
            out.append(InlineRecord(id=item.id, sequence=item.sequence))
        elif isinstance(item, dict):
            out.append(InlineRecord(id=str(item["id"]), sequence=str(item["sequence"])))
        elif isinstance(item, tuple) and len(item) == 2:
            out.append(InlineRecord(id=str(item[0]), sequence=str(item[1])))
        else:
            raise InputValidationError(f"cannot use {item!r} as an input", code="invalid_request",
                                       hint="give FASTA paths/URIs, records, {'id','sequence'} dicts or (id, seq)")
    return out


def parse_since(value: datetime | timedelta | str | None, *, now: datetime | None = None) -> datetime | None:
    """A datetime, a timedelta back from now, or text: ISO-8601 or '30m' / '6h' / '7d'."""
    if value is None or isinstance(value, datetime):
        return value
    now = now or datetime.now(UTC)
    if isinstance(value, timedelta):
        return now - value
    text = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if text[-1:] in units and text[:-1].isdigit():
        return now - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputValidationError(f"--since {value!r}: use ISO-8601 or e.g. 30m, 6h, 7d",
                                   code="invalid_request") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Client:
    """One foldstack environment (`Client("prod")`) or local mode (`Client.local()`)."""

    def __init__(
        self,
        env: str = "prod",
        *,
        session: Any = None,
        region: str | None = None,
        config: ClientConfig | None = None,
        rate_limit: int = 40,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        poll_interval: float = 10.0,
        ssm_prefix: str = "/foldstack",
        api: AwsApi | None = None,
    ) -> None:
        self.env = env
        self._clock = clock or time.monotonic
        self._sleep = sleep or time.sleep
        self.poll_interval = poll_interval
        if api is None:
            # No region or no credentials: say so now (in milliseconds), not after
            # botocore's retries end in a traceback.
            session = session if session is not None else session_for(region)
            check_configured(session)
            limiter = RateLimiter(rate_limit, clock=self._clock, sleep=self._sleep)
            api = AwsApi(session, region=region, limiter=limiter, retry=retry, sleep=self._sleep)
        self.config = config or discover(api, env, prefix=ssm_prefix)
        self.api = api.with_region(self.config.region) if api.region != self.config.region else api
        self._backend: Any = CloudBackend(self.api, self.config)

    @classmethod
    def local(
        cls,
        home: str | Path | None = None,
        *,
        output: str | Path | None = None,
        wait_scale: float = 0.0,
        job_env: dict[str, str] | None = None,
        limits: FastaLimits | None = None,
        runner: Any = None,
        poll_interval: float = 0.2,
        detach: bool = False,
    ) -> Client:
        """Local mode: the same workflow on the local engine, the same Run API.
        `detach`: each run is driven by a background process that outlives this one."""
        if runner is None:
            from foldstack.local.runner import LocalRunner

            runner = LocalRunner(Path(home) if home else None, wait_scale=wait_scale, job_env=job_env,
                                 limits=limits)
        self = cls.__new__(cls)
        self.env, self.config, self.api = "local", None, None
        self._clock, self._sleep, self.poll_interval = time.monotonic, time.sleep, poll_interval
        self._backend = LocalBackend(runner, str(output) if output else None, detach=detach)
        return self

    def __repr__(self) -> str:
        return f"Client(env={self.env!r})"

    def _run_context(self) -> RunContext:
        return RunContext(self._backend, self._clock, self._sleep, self.poll_interval)

    @property
    def is_local(self) -> bool:
        return isinstance(self._backend, LocalBackend)

    @property
    def home(self) -> Path | None:
        """Local mode: the state directory (FOLDSTACK_HOME) this client reads; else None."""
        paths = getattr(getattr(self._backend, "runner", None), "paths", None)
        return Path(paths.home) if paths is not None else None

    def check_installed(self, engine: str) -> None:
        """Local mode: raise `NotInstalledError` (exit 2 in the CLI) unless the engine's
        weights, and for alphafold2 a sequence database, are under the home. Presence
        only: a damaged file is the step's to report. Cloud: nothing to check here."""
        from foldstack.core.errors import BadInputError
        from foldstack.steps.weights_layout import alphafold2_param_files, require_esmfold

        paths = getattr(getattr(self._backend, "runner", None), "paths", None)
        if paths is None:
            return
        weights, db = Path(paths.weights), Path(paths.db)
        how = (f"run `foldstack demo-data --home {paths.home}` or `make demo-data` for tiny demo weights and a "
               f"demo database, or `foldstack weights fetch {engine} --dest {weights}` for the real weights")
        if engine == "esmfold":
            try:
                require_esmfold(weights)
            except BadInputError:
                raise NotInstalledError(f"no esmfold weights in {weights / 'esmfold'}", code="weights_missing",
                                        engine=engine, path=str(weights / "esmfold"), hint=how) from None
            return
        if not alphafold2_param_files(weights):
            raise NotInstalledError(f"no alphafold2 weights (params_*.npz) in {weights / 'alphafold2'}",
                                    code="weights_missing", engine=engine, path=str(weights / "alphafold2"),
                                    hint=how)
        if not any(db.glob("*/CURRENT")):
            raise NotInstalledError(f"no sequence database for the MSA under {db}", code="databases_missing",
                                    engine=engine, path=str(db), hint=how)

    @property
    def limits(self) -> FastaLimits:
        if self.config is not None:
            return self.config.fasta_limits
        return getattr(self._backend.runner, "limits", FastaLimits())

    # -- submission
    def request(self, inputs: InputLike | Iterable[InputLike], *, engine: str = "alphafold2",
                output: str | None = None, **options: Any) -> RunRequest:
        """The run request `submit` would send (validated as a model, inputs not read)."""
        raw = {"inputs": _as_inputs(inputs), "output_uri": str(output or self._backend.default_output()),
               "engine": engine, **{k: v for k, v in options.items() if v is not None}}
        return parse_request(raw)

    def submit(self, inputs: InputLike | Iterable[InputLike] | None = None, *, engine: str = "alphafold2",
               output: str | None = None, preset: str = "monomer", msa_tool: str | None = None,
               reuse_msa: bool = True, owner: str | None = None, tags: dict[str, str] | None = None,
               rerun: bool = False, db_preset: str | None = None, db_versions: Mapping[str, str] | None = None,
               num_models: int | None = None, num_seeds: int | None = None, relax: str | None = None,
               max_failed_fraction: float | None = None, msa_gpu: bool = False, workflow: str | None = None,
               request: Any = None, **fields: Any) -> Run:
        """Validate locally (the Lambda's own checks), upload local files, start the run.

        `workflow`: a registered client workflow (``foldstack.workflows.registry.client_workflows()``;
        default fold, whose arguments follow). Another workflow's request is `request` (its
        request model, a dict of its fields, or a request JSON file / dataset folder holding
        ``request.json``; `inputs` may name that file or folder instead) and/or its fields as
        keyword arguments, `output` its ``output_uri``; see `foldstack.client.workloads` for
        how its local input files are checked and uploaded. Fold's own options are refused
        there.

        AlphaFold2 options (the run request's fields; None: the default): `db_preset`
        (full_dbs | reduced_dbs | colabfold), `db_versions` ({database: version} searched
        instead of each database's CURRENT), `num_models`, `num_seeds`, `relax`
        (none | best | all). `max_failed_fraction`: the failure budget (0-1; None: the
        deployment's), the share of targets that may fail while the run still succeeds as
        "partial" (`Run.outcome()`); every target that folded is published either way.
        `msa_gpu`: the run's chain searches run as one MMseqs2 job on a GPU queue (MMseqs2
        only: `msa_tool="mmseqs2"` or `db_preset="colabfold"`), falling back to the CPU
        MSA jobs if it fails.

        Submitting the same request again returns the existing run (`run.existed`).
        `rerun=True` forces a fresh run of the same request: a new attempt
        (``<run_id>-a<N>``) after the run's finished work is discarded and its published
        results withdrawn, so every target is recomputed (shared caches, such as the MSA
        cache under `reuse_msa`, still apply); `RunStateError` while the run runs. A
        failed run is resumed with `Run.retry()` instead. In local mode the engine's
        weights (and databases) must be installed: once the inputs passed every check,
        `NotInstalledError` says how to get them if not."""
        if workflow not in (None, DEFAULT_WORKFLOW):
            fold_only = {"engine": engine != "alphafold2", "preset": preset != "monomer", "msa_tool": msa_tool,
                         "reuse_msa": not reuse_msa, "db_preset": db_preset, "db_versions": db_versions,
                         "num_models": num_models, "num_seeds": num_seeds, "relax": relax,
                         "max_failed_fraction": max_failed_fraction, "msa_gpu": msa_gpu}
            given = [name for name, value in fold_only.items() if value not in (None, False)]
            if given:
                raise InputValidationError(f"{', '.join(given)}: fold options, not options of workflow {workflow!r}",
                                           code="invalid_request")
            extra = {"output_uri": output, "owner": owner, "tags": tags or None}
            return self._submit_workload(workflow, request if request is not None else inputs,
                                         {**{k: v for k, v in extra.items() if v is not None}, **fields},
                                         rerun=rerun)
        if fields or request is not None:
            raise InputValidationError(f"{', '.join(sorted(fields)) or 'request'}: not an argument of a fold "
                                       "submission (fields of another workflow's request: pass workflow=...)",
                                       code="invalid_request")
        if inputs is None:
            raise InputValidationError("no inputs given: FASTA paths/URIs or records", code="empty_input")
        request = self.request(inputs, engine=engine, output=output, preset=preset, msa_tool=msa_tool,
                               reuse_msa=reuse_msa, owner=owner, tags=tags or None, db_preset=db_preset,
                               db_versions=dict(db_versions) if db_versions else None, num_models=num_models,
                               num_seeds=num_seeds, relax=relax, max_failed_fraction=max_failed_fraction,
                               msa_gpu=msa_gpu or None)
        prepared = self._backend.prepare(request)  # every input check, before anything starts
        if self.is_local:
            self.check_installed(prepared.request.engine)
        return self._launch(prepared, rerun=rerun)

    def _submit_workload(self, workflow: str, request: Any, fields: dict[str, Any], *, rerun: bool) -> Run:
        """Another registered workflow's run (see `submit`)."""
        from foldstack.client.workloads import request_class
        from foldstack.workflows.registry import load_registry

        if self.config is not None and workflow not in self.config.deployed_workflows and \
                workflow not in load_registry():
            raise InputValidationError(f"unknown workflow {workflow!r}; deployed in environment {self.env!r}: "
                                       f"{', '.join(sorted(self.config.deployed_workflows))}", code="invalid_request")
        request_class(workflow)  # unknown or not a client workflow: say so before anything else
        prepare = getattr(self._backend, "prepare_workload", None)
        if prepare is None:
            raise InputValidationError(f"workflow {workflow!r} cannot be submitted in this mode",
                                       code="invalid_request")
        prepared = prepare(workflow, request, fields=fields)  # every offline check, before anything is written
        return self._launch(prepared, rerun=rerun)

    def rerun(self, manifest: Manifest | str | Path) -> Run:
        """A fresh run with the inputs and parameters of a published run, pinned to the
        database versions it searched (``db_versions``; see `foldstack.client.rerun`).

        `manifest`: a :class:`Manifest`, a ``manifest.json`` or the run's results folder, an
        ``s3://`` URI (cloud), or a run id of this environment. Always a new run with a run id
        of its own (the request's ``rerun_of``: the old run id, ``<run_id>.<n>`` for the n-th
        rerun), so every target is computed and the old run's results are never touched.
        Refused with `DatabaseVersionMissingError` (``db_version_missing``) before anything
        is submitted when a pinned version is no longer installed."""
        from foldstack.client.rerun import check_pins, read_manifest, rerun_request

        source = read_manifest(self, manifest)
        request = rerun_request(source)
        missing, where = self._backend.missing_db_versions(request.db_versions)
        check_pins(missing, where, source.run_id)
        prepared = self._backend.prepare(request)
        if self.is_local:
            self.check_installed(prepared.request.engine)
        return self._start_rerun(source, prepared)

    def _start_rerun(self, source: Manifest, prepared: Prepared) -> Run:
        """Start `prepared`, or the first later rerun of `source` (``rerun_of`` =
        ``<run_id>.<n>``) whose run id has neither an execution nor published results: a
        rerun never becomes an attempt of an existing run. A run id found free that another
        rerun of the same run started before this one could (the backend answers that it
        existed) is left to that one, and the next is taken."""
        from foldstack.client.rerun import MAX_RERUNS, rerun_request

        for n in range(2, MAX_RERUNS + 2):
            if not self._run_exists(prepared.run_id, prepared.request.output_uri):
                run = self._launch(prepared)
                if not run.existed:
                    return run
            prepared = self._backend.prepare(rerun_request(source, n))
        raise InputValidationError(f"run {source.run_id} has been rerun {MAX_RERUNS} times already",
                                   code="invalid_request", run_id=source.run_id)

    def _run_exists(self, run_id: str, output_uri: str) -> bool:
        try:
            self._backend.describe(run_id)
            return True
        except RunNotFoundError:
            return self._backend.read(join_under(output_uri, run_id, MANIFEST)) is not None

    def _launch(self, prepared: Prepared, *, rerun: bool = False) -> Run:
        self._backend.upload(prepared)
        existed = self._backend.start(prepared, rerun=rerun)
        return Run(self._run_context(), prepared.run_id, request=prepared.request.model_dump(mode="json"),
                   existed=existed, workflow=prepared.workflow)

    def submit_many(
        self,
        items: InputLike | Iterable[InputLike],
        *,
        per_run: int = 100,
        max_concurrency: int = 4,
        progress: bool = True,
        engine: str = "alphafold2",
        output: str | None = None,
        **options: Any,
    ) -> RunSet:
        """Thousands of sequences -> runs of `per_run` targets each.

        Every record is parsed and checked first (ids unique across the campaign); then
        each batch is validated like `submit`, uploaded as one FASTA and started, at most
        `max_concurrency` at once and never faster than the client's rate limit. The same
        items in the same order give the same run ids, so re-running after an
        interruption starts only what is missing."""
        if per_run < 1 or max_concurrency < 1:
            raise ValueError("per_run and max_concurrency must be >= 1")
        records = self._records(items)
        chunks = [records[i:i + per_run] for i in range(0, len(records), per_run)]
        prepared = [
            self._backend.prepare(
                self.request([InlineRecord(id=r.id, sequence=r.sequence) for r in chunk], engine=engine,
                             output=output, **options),
                inline_as_file=True,
            )
            for chunk in chunks
        ]
        if self.is_local:
            self.check_installed(engine)
        bar = CountBar("sequences submitted", len(records)) if progress else None
        try:
            def launch(item: tuple[Prepared, int]) -> Run:
                run = self._launch(item[0])
                if bar is not None:
                    bar.advance(item[1])
                return run

            with ThreadPoolExecutor(max_workers=max_concurrency) as pool:
                runs = list(pool.map(launch, [(p, len(c)) for p, c in zip(prepared, chunks, strict=True)]))
        finally:
            if bar is not None:
                bar.close()
        return RunSet(self._run_context(), runs)

    def _records(self, items: InputLike | Iterable[InputLike]) -> list[FastaRecord]:
        limits = self.limits
        records: list[FastaRecord] = []
        for index, item in enumerate(_as_inputs(items)):
            if isinstance(item, InlineRecord):
                source = f"records[{index}]"
                rid = validate_id(item.id, source=source, line=1)
                chains = normalise_chains("".join(item.sequence.split()), record_id=rid, source=source, line=1,
                                          limits=limits)
                records.append(FastaRecord(id=rid, chains=chains, source=source, line=1))
            elif item.startswith("s3://"):
                data = self._backend.read(item)
                if data is None:
                    raise InputValidationError(f"{item} does not exist", code="missing_input", source=item)
                records.extend(parse_fasta(data, source=item, limits=limits.model_copy(
                    update={"max_records": 10**9, "max_bytes": 2**40})))
            else:
                path = Path(item.removeprefix("file://")).expanduser()
                if not path.is_file():
                    raise InputValidationError(f"input file {str(path)!r} does not exist", code="missing_input",
                                               source=str(path))
                # a campaign file may hold more records than one run allows; each batch is checked again
                records.extend(parse_fasta(path.read_bytes(), source=str(path), limits=limits.model_copy(
                    update={"max_records": 10**9, "max_bytes": 2**40})))
        if not records:
            raise InputValidationError("no sequences given", code="empty_input")
        check_unique(records)
        return records

    # -- finding runs
    def run(self, run_id: str, workflow: str | None = None) -> Run:
        """A handle on an existing run (nothing is fetched until you ask). `workflow`: which
        workflow runs it, when known (else it is looked up in every deployed one)."""
        return Run(self._run_context(), run_id, workflow=workflow)

    def runs(self, status: str | None = None, since: datetime | timedelta | str | None = None) -> list[Run]:
        """Every run of this environment (newest first), following every page."""
        start = parse_since(since)
        status = status.upper() if status else None
        return [Run(self._run_context(), info.run_id, info=info, workflow=info.workflow)
                for info in self._backend.list_runs(status, start)]

    def doctor(self, **kwargs: Any) -> Any:
        from foldstack.client.doctor import run_checks

        if self.config is None:
            raise InputValidationError("doctor checks a deployed environment, not local mode", code="invalid_request")
        return run_checks(self.api, self.config, **kwargs)


__all__ = ["Client", "Run", "RunSet", "parse_since"]

