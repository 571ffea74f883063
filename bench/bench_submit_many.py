"""API calls per 100 sequences for `Client.submit_many`, offline (moto) and with a fake
clock, so the rate limiter's effect on wall time is computed rather than waited for.

    .venv/bin/python bench/bench_submit_many.py [--sequences 10000] [--per-run 10 50 100 500]

Run by hand; not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REGION = "us-east-1"


def deploy(env: str) -> None:
    import boto3

    from foldstack.local import local_values, substitute

    s3 = boto3.client("s3", region_name=REGION)
    for bucket in ("bench-inputs", "bench-results", "bench-scratch"):
        s3.create_bucket(Bucket=bucket)
    jobs = REPO / "statemachines/fold/jobs.yaml"
    definition = substitute((REPO / "statemachines/rendered/fold.asl.json").read_text(),
                            local_values(jobs, scratch_mount="/fsx/scratch", db_mount="/fsx/db", weights_dir="/w"))
    arn = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
        name=f"bench-{env}", definition=definition, roleArn="arn:aws:iam::123456789012:role/x")["stateMachineArn"]
    params = {"state_machine_arn": arn, "input_prefix": "s3://bench-inputs/uploads",
              "allowed_input_prefixes": "s3://bench-inputs/uploads", "output_prefix": "s3://bench-results/runs",
              "scratch_bucket": "bench-scratch", "region": REGION, "log_group_batch": "/aws/batch/job",
              "queues": "{}", "msa_cache_uri": "s3://bench-scratch/cache"}
    ssm = boto3.client("ssm", region_name=REGION)
    for name, value in params.items():
        ssm.put_parameter(Name=f"/foldstack/{env}/{name}", Value=value, Type="String")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=10_000)
    parser.add_argument("--per-run", type=int, nargs="+", default=[10, 50, 100, 500])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": REGION}.items():
        os.environ.setdefault(k, v)
    from moto import mock_aws

    from foldstack.client import AwsApi, Client, FakeClock, RateLimiter
    from foldstack.client.ratelimit import max_in_window

    rng = random.Random(1)
    aa = "ACDEFGHIKLMNPQRSTVWY"
    records = [(f"s{i:06d}", "".join(rng.choice(aa) for _ in range(rng.randint(50, 400))))
               for i in range(args.sequences)]
    rows = []
    for per_run in args.per_run:
        with mock_aws():
            env = f"b{per_run}"
            deploy(env)
            clock = FakeClock()
            api = AwsApi(region=REGION, limiter=RateLimiter(40, clock=clock, sleep=clock.sleep, record=True),
                         sleep=clock.sleep)
            client = Client(env, api=api, clock=clock, sleep=clock.sleep)
            discovery = api.total_calls
            started = time.perf_counter()
            runs = client.submit_many(records, per_run=per_run, max_concurrency=args.concurrency,
                                      progress=False, engine="esmfold")
            wall = time.perf_counter() - started
            calls = api.total_calls - discovery
            rows.append({
                "per_run": per_run, "runs": len(runs), "api_calls": calls,
                "calls_per_100_sequences": round(100 * calls / args.sequences, 2),
                "by_operation": {k: v for k, v in sorted(api.calls.items()) if not k.startswith("ssm:")},
                "max_calls_in_any_second": max_in_window(api.limiter.history),
                "rate_limited_seconds": round(clock(), 2), "cpu_seconds": round(wall, 2),
            })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"submit_many: {args.sequences} sequences, concurrency {args.concurrency}, limit 40 calls/s")
    print(f"{'per run':>8} {'runs':>6} {'calls':>7} {'calls/100 seq':>14} {'max/s':>6} {'limited s':>10}")
    for r in rows:
        print(f"{r['per_run']:>8} {r['runs']:>6} {r['api_calls']:>7} {r['calls_per_100_sequences']:>14} "
              f"{r['max_calls_in_any_second']:>6} {r['rate_limited_seconds']:>10}")
    print("(+ SSM configuration discovery: one GetParametersByPath page per 10 parameters, once per client)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    sys.exit(main())
