"""GPU benchmark: full-size AlphaFold2 and ESMFold with random weights over length buckets,
and MMseqs2 GPU vs CPU search. One command on a machine with an NVIDIA GPU::

    timeout 3000 python bench/gpu/bench_gpu.py --out bench-gpu.json

(``--dry-run`` prints the plan and checks the environment without touching a GPU; it is
what the offline test runs.) Every section has its own time budget (``--budget-s``) and
writes its results as it goes, so a run cut short by ``timeout`` still leaves numbers.

* **AlphaFold2**: AlphaFold's own full config (``--af2-model``, default ``model_1_ptm``:
  48 Evoformer blocks, 512 MSA clusters, 5,120 extra sequences, 4 templates, 3 recycles)
  with random parameters (haiku init), inputs padded to each length bucket exactly as the
  predict step pads them (:func:`foldstack.steps.alphafold2.pad_to_length`). Per length:
  first call (compile + run) and steady-state run seconds, peak device memory.
* **ESMFold**: the ``facebook/esmfold_v1`` shapes (ESM-2 3B language model, 36 layers x
  2,560, in fp16; folding trunk 48 blocks, 1,024 / 128 state dims; 4 recycles), random
  weights built on the GPU. Per length: first and steady-state seconds, peak memory; the
  trunk is chunked (``--esm-chunk``) above ``--esm-chunk-from`` residues.
* **MMseqs2**: a random protein database (``--mmseqs-seqs`` sequences), indexed the way
  the refresh workflow indexes (:func:`foldstack.steps.mmseqs.build_index`: CPU index, and
  the padded GPU index), then ``--mmseqs-queries`` queries searched on CPU (all cores) and
  on the GPU (``gpuserver`` + ``--gpu 1``). Needs an MMseqs2 built with CUDA (>= 16;
  ``FOLDSTACK_MMSEQS=/path/to/mmseqs``); Debian's v14 has no GPU search (then only CPU).

Lengths default to the predict step's buckets from 100 to 2,500 residues.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SECTIONS = ("af2", "esmfold", "mmseqs")
DEFAULT_LENGTHS = (128, 256, 512, 768, 1024, 1536, 2048, 2560)  # predict buckets covering 100-2,500
ESMFOLD_V1 = {  # facebook/esmfold_v1's shapes (its trunk and structure module: transformers' defaults)
    "hidden_size": 2560, "num_hidden_layers": 36, "num_attention_heads": 40, "intermediate_size": 10240,
    "max_position_embeddings": 1026, "position_embedding_type": "rotary", "emb_layer_norm_before": False,
    "token_dropout": True, "esmfold_config": {"fp16_esm": True},
}
AMINO = "ACDEFGHIKLMNPQRSTVWY"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Time full-size AlphaFold2 / ESMFold and MMseqs2 GPU vs CPU.")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma list of: " + ", ".join(SECTIONS))
    ap.add_argument("--lengths", default=",".join(map(str, DEFAULT_LENGTHS)), help="residues, comma list")
    ap.add_argument("--af2-model", default="model_1_ptm", help="AlphaFold model config (full size)")
    ap.add_argument("--esm-chunk", type=int, default=64, help="ESMFold trunk chunk size for long inputs")
    ap.add_argument("--esm-chunk-from", type=int, default=1024, help="chunk the trunk from this length on")
    ap.add_argument("--mmseqs-seqs", type=int, default=200_000, help="random sequences in the search DB")
    ap.add_argument("--mmseqs-queries", type=int, default=32)
    ap.add_argument("--budget-s", type=float, default=900.0, help="time budget per section (seconds)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per length (the first includes the compile)")
    ap.add_argument("--out", default="bench-gpu.json", help="results file (JSON, rewritten after every step)")
    ap.add_argument("--workdir", default=None, help="scratch for the MMseqs2 DB (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dry-run", action="store_true", help="print the plan and environment; run nothing")
    args = ap.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {bad}; choose from {list(SECTIONS)}")
    try:
        args.lengths = sorted({int(x) for x in args.lengths.split(",") if x.strip()})
    except ValueError:
        ap.error("--lengths: comma-separated whole numbers")
    if not args.lengths or args.lengths[0] < 16 or args.lengths[-1] > 4096:
        ap.error("--lengths must lie in 16..4096")
    if args.repeats < 1 or args.budget_s <= 0:
        ap.error("--repeats >= 1 and --budget-s > 0")
    return args


def environment() -> dict[str, Any]:
    """What this machine offers (no GPU is touched)."""
    env: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True)
        env["gpus"] = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
    else:
        env["gpus"] = []
    from importlib import metadata

    for dist in ("jax", "jaxlib", "alphafold-colabfold", "torch", "transformers"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = None
    binary = os.environ.get("FOLDSTACK_MMSEQS") or shutil.which("mmseqs")
    env["mmseqs"] = binary
    if binary:
        help_text = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
        env["mmseqs_gpu"] = "gpuserver" in help_text
    return env


def plan(args: argparse.Namespace) -> dict[str, Any]:
    from foldstack.steps.alphafold2 import length_bucket

    return {
        "sections": args.sections,
        "lengths": args.lengths,
        "af2_buckets": {n: length_bucket(n) for n in args.lengths},
        "af2_model": args.af2_model,
        "esmfold": {**ESMFOLD_V1, "chunk": args.esm_chunk, "chunk_from": args.esm_chunk_from},
        "mmseqs": {"db_sequences": args.mmseqs_seqs, "queries": args.mmseqs_queries},
        "budget_s_per_section": args.budget_s,
        "repeats": args.repeats,
    }


class Results:
    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path, self.data = path, {**header, "results": {s: [] for s in header["plan"]["sections"]}}
        self.save()

    def add(self, section: str, row: dict[str, Any]) -> None:
        self.data["results"][section].append(row)
        print(json.dumps({"section": section, **row}), flush=True)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)


# ------------------------------------------------------------------ AlphaFold2


def bench_af2(args: argparse.Namespace, out: Results) -> None:
    import jax
    import numpy as np
    from alphafold.model import model as af_model

    from foldstack.steps.alphafold2 import dummy_features, length_bucket, model_config, pad_to_length

    cfg = model_config(args.af2_model)
    runner = af_model.RunModel(cfg, None)
    deadline = time.monotonic() + args.budget_s
    for n in args.lengths:
        if time.monotonic() > deadline:
            out.add("af2", {"length": n, "skipped": "section budget spent"})
            continue
        bucket = length_bucket(n)
        raw = dummy_features(False, n)
        processed = runner.process_features(dict(raw), random_seed=args.seed)
        if bucket > n:
            processed = pad_to_length(processed, runner.config, bucket)
        if runner.params is None:
            t = time.perf_counter()
            runner.init_params(processed, random_seed=args.seed)  # random weights, haiku init
            jax.block_until_ready(jax.tree_util.tree_leaves(runner.params))
            out.add("af2", {"init_params_s": round(time.perf_counter() - t, 1), "model": args.af2_model})
        times = []
        try:
            for _ in range(args.repeats):
                t = time.perf_counter()
                result, recycles = runner.predict(processed, random_seed=args.seed)
                np.asarray(result["plddt"])
                times.append(round(time.perf_counter() - t, 2))
        except Exception as exc:  # noqa: BLE001 - out of memory at a length is a result
            out.add("af2", {"length": n, "bucket": bucket, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            continue
        out.add("af2", {"length": n, "bucket": bucket, "first_s": times[0], "steady_s": min(times[1:] or times),
                        "recycles": int(recycles), "peak_gib": _jax_peak_gib()})


def _jax_peak_gib() -> float | None:
    import jax

    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - CPU backends have none
        return None
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else round(peak / 2**30, 2)


# ------------------------------------------------------------------ ESMFold


def bench_esmfold(args: argparse.Namespace, out: Results) -> None:
    import torch
    from transformers import EsmConfig, EsmForProteinFolding
    from transformers.models.esm.configuration_esm import get_default_vocab_list

    if not torch.cuda.is_available():
        out.add("esmfold", {"skipped": "no CUDA device"})
        return
    vocab = list(get_default_vocab_list())
    cfg = EsmConfig(vocab_size=len(vocab), pad_token_id=vocab.index("<pad>"), mask_token_id=vocab.index("<mask>"),
                    is_folding_model=True, vocab_list=vocab, **ESMFOLD_V1)
    t = time.perf_counter()
    torch.manual_seed(args.seed)
    with torch.device("cuda"):
        model = EsmForProteinFolding(cfg).eval()
    model.esm = model.esm.half()
    torch.cuda.synchronize()
    params = sum(p.numel() for p in model.parameters())
    out.add("esmfold", {"init_s": round(time.perf_counter() - t, 1), "parameters": params})
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.budget_s
    for n in args.lengths:
        if time.monotonic() > deadline:
            out.add("esmfold", {"length": n, "skipped": "section budget spent"})
            continue
        seq = "".join(rng.choice(AMINO) for _ in range(n))
        model.trunk.set_chunk_size(args.esm_chunk if n >= args.esm_chunk_from else None)
        torch.cuda.reset_peak_memory_stats()
        times = []
        try:
            for _ in range(args.repeats):
                t = time.perf_counter()
                with torch.inference_mode():
                    model.infer([seq])
                torch.cuda.synchronize()
                times.append(round(time.perf_counter() - t, 2))
        except torch.cuda.OutOfMemoryError as exc:
            out.add("esmfold", {"length": n, "error": f"out of memory: {str(exc)[:200]}"})
            torch.cuda.empty_cache()
            continue
        out.add("esmfold", {"length": n, "first_s": times[0], "steady_s": min(times[1:] or times),
                            "chunk": args.esm_chunk if n >= args.esm_chunk_from else None,
                            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)})


# ------------------------------------------------------------------ MMseqs2


def bench_mmseqs(args: argparse.Namespace, out: Results, env: dict[str, Any]) -> None:
    from foldstack.steps import mmseqs
    from foldstack.steps.databases import Database

    if not env.get("mmseqs"):
        out.add("mmseqs", {"skipped": "no mmseqs binary (set FOLDSTACK_MMSEQS)"})
        return
    binary = env["mmseqs"]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-mmseqs-"))
    version_dir = work / "db" / "random" / "v1"
    version_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    fasta = version_dir / "random.fasta"
    t = time.perf_counter()
    seqs = []
    with open(fasta, "w") as f:
        for i in range(args.mmseqs_seqs):
            s = "".join(rng.choice(AMINO) for _ in range(rng.randint(60, 600)))
            if i < args.mmseqs_queries:
                seqs.append(s)
            f.write(f">r{i}\n{s}\n")
    out.add("mmseqs", {"db_sequences": args.mmseqs_seqs, "db_bytes": fasta.stat().st_size,
                       "write_s": round(time.perf_counter() - t, 1)})
    db = Database(name="random", version="v1", path=version_dir, manifest={"sequences": "random.fasta"},
                  manifest_sha256="0")
    cpus = os.cpu_count() or 1
    modes = [False] + ([True] if env.get("mmseqs_gpu") else [])
    if not env.get("mmseqs_gpu"):
        out.add("mmseqs", {"gpu": "skipped: this MMseqs2 has no gpuserver (needs a CUDA build, >= 16)"})
    for gpu in modes:
        t = time.perf_counter()
        mmseqs.build_target_index(db, binary, threads=cpus, gpu=gpu)
        out.add("mmseqs", {"gpu": gpu, "index_s": round(time.perf_counter() - t, 1)})
        os.environ[mmseqs.GPU_ENV] = "1" if gpu else "0"
        try:
            t = time.perf_counter()
            hits = 0
            for i, s in enumerate(seqs):
                a3m, _ = mmseqs.search_a3m(s, f"q{i}", db, cpus=cpus, work_dir=work / "search", binary=binary)
                hits += a3m.count(">") - 1
            out.add("mmseqs", {"gpu": gpu, "queries": len(seqs), "search_s": round(time.perf_counter() - t, 1),
                               "hits": hits})
        finally:
            mmseqs.stop_gpu_servers()
            os.environ.pop(mmseqs.GPU_ENV, None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = environment()
    header = {"plan": plan(args), "environment": env, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.dry_run:
        print(json.dumps(header, indent=2))
        return 0
    if not env["gpus"]:
        print("warning: no NVIDIA GPU found (nvidia-smi); timings will be CPU timings", file=sys.stderr)
    out = Results(Path(args.out), header)
    for section in args.sections:
        try:
            if section == "af2":
                bench_af2(args, out)
            elif section == "esmfold":
                bench_esmfold(args, out)
            else:
                bench_mmseqs(args, out, env)
        except Exception as exc:  # noqa: BLE001 - one section failing keeps the others' numbers
            out.add(section, {"error": f"{type(exc).__name__}: {str(exc)[:500]}"})
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
