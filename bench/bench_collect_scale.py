"""S3 calls and wall time per Lambda invocation of a run, by run size, on moto S3: Validate
Input, Stage Inputs (the per-target FASTAs written by a bounded thread pool, then the done
record), Plan Batches, one Publish Batch per batch (each batch's targets published, its
summary written), the final Collect Outputs (the run's summary.tsv, failures.tsv, index.html
and manifest, from the per-batch summaries) and Cleanup (the partial run's: finished targets
kept, the rest of scratch deleted).

    .venv/bin/python bench/bench_collect_scale.py [--targets 100 1000 10000] [--fail-every 50]
        [--latency-ms 20 --stage-workers 1]

What runs: the real handlers (``lambdas/*/handler.py``: validate_input, stage_inputs,
plan_batches, publish_batch, collect_outputs, cleanup) in-process against moto S3, in the order and
with the events the workflow gives them. What is prepared instead of run: each target's
predict outputs in scratch (a done record and the files a fold leaves: ranked_0.pdb/.cif,
metrics.json, plddt.tsv, as the fake step of tests/reliability writes them), and for every
``--fail-every``-th target a failure record instead (``predict.failed.json``), so the runs
are partial. Driving the handlers directly, not a whole local run per size: 10,000 targets
through the local engine (one Predict job process per batch, 1,250 batches) takes far longer
on two shared cores than the handlers themselves, and the engine adds nothing to what each
Lambda reads and writes. ESMFold requests (no MSA step: the MSA files would add a fixed number
of calls per target, not a dependence on the run's size).

Runs of up to ``--full-up-to`` targets run Publish Batch on every batch. Above it (moto costs
~20-30 ms a call on a shared machine: 1,250 batches would take over an hour) Publish Batch
runs on ``--sample`` batches spread over the run, each measured as above; the other batches'
summaries are then written directly (copies of a measured summary with their own target
ids, uncounted), so that Collect Outputs reads as many summaries as the full run would.
Cleanup then finds only the measured batches' predict folders in scratch (the others were
never written), so above ``--full-up-to`` its figure is for that many finished targets.

Every S3 API call the handlers make is counted (a botocore ``before-call`` hook on the
client :mod:`foldstack.storage` uses). Run by hand; not part of ``make test``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "reliability"))  # soak_step.expected_outputs: the fake fold's files

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ"


def load_handler(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_handler_{name}", REPO / "lambdas" / name / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.handler


class Counter:
    """S3 API calls on foldstack.storage's client, by operation."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()  # Stage Inputs and Cleanup call S3 from a thread pool
        self.latency_s = latency_s  # a modelled network round trip per call (moto answers in-process)

    def __call__(self, event_name: str, **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]
        with self.lock:
            self.calls[op] = self.calls.get(op, 0) + 1
        if self.latency_s:
            time.sleep(self.latency_s)  # releases the GIL, as waiting on a socket does

    def take(self) -> int:
        with self.lock:
            n = sum(self.calls.values())
            self.calls.clear()
        return n

    def timed(self, fn: Any, *args: Any) -> tuple[Any, dict[str, Any]]:
        """Call `fn(*args)` as one invocation: its result and {calls, seconds}."""
        self.take()
        started = time.perf_counter()
        result = fn(*args)
        return result, {"calls": self.take(), "seconds": round(time.perf_counter() - started, 3)}


def prepare(s3: Any, n: int, fail_every: int) -> tuple[dict[str, Any], list[str]]:
    """The run's FASTA in the lake; returns the event and the failing targets."""
    from foldstack.core.fasta import parse_fasta
    from foldstack.core.request import RunRequest
    from foldstack.core.runid import make_run_id

    # distinct sequences of a few lengths (one size class)
    records = [(f"t{i:05d}", SEQ[: 40 + i % 20] + "ACDEFGHIKLMNPQRSTVWY"[i % 20] * (1 + i % 7)) for i in range(n)]
    data = "".join(f">{rid}\n{seq}\n" for rid, seq in records)
    s3.put_object(Bucket="lake", Key=f"inputs/run{n}.fasta", Body=data.encode())
    request = {"inputs": [f"s3://lake/inputs/run{n}.fasta"], "output_uri": "s3://lake/results", "engine": "esmfold"}
    run_id = make_run_id(RunRequest.model_validate(request), parse_fasta(data))
    failing = [rid for i, (rid, _) in enumerate(records) if fail_every and i % fail_every == fail_every - 1]
    return {"run_id": run_id, "request": request, "records": records}, failing


def fake_predict(s3: Any, run_id: str, records: list[tuple[str, str]], failing: set[str]) -> None:
    """What each Predict job leaves in scratch: outputs and a done record, or a failure record."""
    from soak_step import expected_outputs

    for rid, seq in records:
        base = f"{run_id}/predict/{rid}"
        if rid in failing:
            record = {"step": "predict", "run_id": run_id, "target": rid, "code": "bad_input",
                      "message": "BadInputError: (benchmark) refused", "job_id": "bench", "log": None}
            s3.put_object(Bucket="scratch", Key=f"{base}/predict.failed.json", Body=json.dumps(record).encode())
            continue
        files = expected_outputs("predict", seq, {"engine": "esmfold"})
        files["ranked_0.cif"] = b"data_bench\n#\n" + files["ranked_0.pdb"]
        for rel, body in files.items():
            s3.put_object(Bucket="scratch", Key=f"{base}/{rel}", Body=body)
        done = {"step": "predict", "run_id": run_id, "target": rid,
                "outputs": {rel: hashlib.sha256(body).hexdigest() for rel, body in files.items()},
                "output_sizes": {rel: len(body) for rel, body in files.items()}, "timings": {"total": 1.0}}
        s3.put_object(Bucket="scratch", Key=f"{base}/predict.done.json", Body=json.dumps(done).encode())


def fill_summaries(s3: Any, run_id: str, batches: list[dict[str, Any]], measured: list[int]) -> None:
    """Summaries of the batches not measured: a measured batch's, with their own target ids."""
    model = json.loads(s3.get_object(Bucket="scratch", Key=f"{run_id}/collect/{batches[measured[0]]['batch']}.json")
                       ["Body"].read())
    template = model["targets"][0]
    for i, batch in enumerate(batches):
        if i in measured:
            continue
        summary = {"batch": batch["batch"], "failures": [],
                   "targets": [{**template, **{k: t[k] for k in ("id", "sha256", "length", "chains")}}
                               for t in batch["targets"]]}
        s3.put_object(Bucket="scratch", Key=f"{run_id}/collect/{batch['batch']}.json",
                      Body=json.dumps(summary).encode())


def bench_one(s3: Any, counter: Counter, n: int, fail_every: int, full_up_to: int, sample: int) -> dict[str, Any]:
    import yaml

    handlers = {name: load_handler(name) for name in
                ("validate_input", "stage_inputs", "plan_batches", "publish_batch", "collect_outputs", "cleanup")}
    knobs = yaml.safe_load((REPO / "statemachines/fold/knobs.yaml").read_text())
    event, failing = prepare(s3, n, fail_every)
    run_id, request = event["run_id"], event["request"]
    validated, validate_m = counter.timed(handlers["validate_input"],
                                          {"run_id": run_id, "request": request, "state_targets_max": 200})
    pointer = {"targets": validated["targets"], "targets_digest": validated["targets_digest"]}
    _, stage_m = counter.timed(handlers["stage_inputs"], {"run_id": run_id, "request": request, **pointer})
    plan, plan_m = counter.timed(handlers["plan_batches"], {
        "run_id": run_id, **pointer, "max_targets_per_job": knobs["batching"]["max_targets_per_job"],
        "bulk_threshold": knobs["bulk"]["threshold_targets"]})
    batches = plan["batches"] or json.loads(s3.get_object(Bucket=plan["manifest"]["bucket"],
                                                          Key=plan["manifest"]["key"])["Body"].read())
    measured = list(range(len(batches))) if n <= full_up_to else \
        sorted({round(i * (len(batches) - 1) / (sample - 1)) for i in range(sample)})
    ids = {t["id"] for i in measured for t in batches[i]["targets"]}
    fake_predict(s3, run_id, [r for r in event["records"] if r[0] in ids], set(failing))
    counter.take()
    per_batch: list[tuple[int, float]] = []
    for i in measured:
        batch = batches[i]
        started = time.perf_counter()
        handlers["publish_batch"]({"run_id": run_id, "request": request, "batch": batch, "msa": [],
                                   "predict": {"failed": False}})
        per_batch.append((counter.take(), time.perf_counter() - started))
    if len(measured) < len(batches):
        fill_summaries(s3, run_id, batches, measured)
        counter.take()
    started = time.perf_counter()
    try:
        result = handlers["collect_outputs"]({"run_id": run_id, "request": request, **pointer,
                                              "max_failed_fraction": 0.1})
    except Exception as exc:  # noqa: BLE001 - beyond the budget: reported, as the run would be
        result = {"error": str(exc)}
    collect = (counter.take(), time.perf_counter() - started)
    keep = (result.get("outcome") == "partial") if isinstance(result, dict) else False
    cleanup_event = {"run_id": run_id, "request": request, "failed": not keep and "error" in result}
    if keep:
        cleanup_event["keep_finished"] = True
    cleaned, cleanup_m = counter.timed(handlers["cleanup"], cleanup_event)
    cleanup_m["kept_targets"] = (cleaned or {}).get("kept_targets")
    calls = [c for c, _ in per_batch]
    seconds = [s for _, s in per_batch]
    return {"targets": n, "batches": len(batches), "measured_batches": len(measured),
            "failed": len([t for t in failing if t in ids]),
            "validate_input": validate_m, "stage_inputs": stage_m, "plan_batches": plan_m, "cleanup": cleanup_m,
            "publish_batch": {"max_calls": max(calls), "mean_calls": round(statistics.mean(calls), 1),
                              "max_seconds": round(max(seconds), 3),
                              "mean_seconds": round(statistics.mean(seconds), 3)},
            "collect_outputs": {"calls": collect[0], "seconds": round(collect[1], 3)},
            "collect_result": result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--fail-every", type=int, default=50, help="every N-th target fails (0: none)")
    parser.add_argument("--full-up-to", type=int, default=1000, help="runs up to this size: every batch published")
    parser.add_argument("--sample", type=int, default=40, help="batches published (measured) in larger runs")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="add this round trip to every S3 call of the handlers (moto has none)")
    parser.add_argument("--stage-workers", type=int, default=None,
                        help="Stage Inputs' concurrent writes (default: tasks/stage.py STAGE_WORKERS; 1: sequential)")
    args = parser.parse_args()

    os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "FOLDSTACK_SCRATCH_ROOT": "s3://scratch",
                       "FOLDSTACK_ALLOWED_INPUT_PREFIXES": "s3://lake/inputs",
                       "FOLDSTACK_ALLOWED_OUTPUT_PREFIXES": "s3://lake/results", "FOLDSTACK_LOG_LEVEL": "WARNING",
                       "FOLDSTACK_PRICE_REGION": "us-east-1"})
    import boto3
    from moto import mock_aws

    from foldstack import storage
    from foldstack.workflows.specs import load_workflow

    if args.stage_workers is not None:
        from foldstack.tasks import stage

        stage.STAGE_WORKERS = args.stage_workers
    classes = load_workflow("fold").jobs.size_classes
    os.environ["FOLDSTACK_SIZE_CLASSES"] = json.dumps({k: v.model_dump() for k, v in classes.items()})
    rows = []
    for n in args.targets:
        with mock_aws():
            storage.reset_clients()
            s3 = boto3.client("s3")
            for bucket in ("lake", "scratch"):
                s3.create_bucket(Bucket=bucket)
            counter = Counter(args.latency_ms / 1000)
            storage._s3().meta.events.register("before-call.s3", counter)
            rows.append(bench_one(s3, counter, n, args.fail_every, args.full_up_to, args.sample))
            print(json.dumps(rows[-1]), flush=True)
        storage.reset_clients()
    print("\ntargets  batches (measured)  PublishBatch max calls (mean)  max s (mean)    Collect calls  Collect s")
    for r in rows:
        pb, co = r["publish_batch"], r["collect_outputs"]
        print(f"{r['targets']:>7}  {r['batches']:>7} ({r['measured_batches']:>5})  {pb['max_calls']:>16} "
              f"({pb['mean_calls']:>5})  {pb['max_seconds']:>6} ({pb['mean_seconds']:>5})  {co['calls']:>13}  "
              f"{co['seconds']:>9}")
    print("\ntargets  Validate calls/s   Stage calls/s      Plan calls/s   Cleanup calls/s (kept)")
    for r in rows:
        v, st, pl, cl = r["validate_input"], r["stage_inputs"], r["plan_batches"], r["cleanup"]
        print(f"{r['targets']:>7}  {v['calls']:>6} / {v['seconds']:<7} {st['calls']:>6} / {st['seconds']:<7} "
              f"{pl['calls']:>5} / {pl['seconds']:<6} {cl['calls']:>6} / {cl['seconds']:<7} ({cl['kept_targets']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
