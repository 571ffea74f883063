"""HMMER searches that stream their database from disk (pyhmmer, in-process).

Memory does not grow with the database: the target FASTA is read in blocks of
``FOLDSTACK_SEARCH_BLOCK`` sequences (default 4,096) from an open
``pyhmmer.easel.SequenceFile``; each block is searched by one of ``cpus`` worker threads
(one ``Pipeline`` each) and dropped, and at most ``2 × cpus`` blocks are in flight. The
hits of all blocks are merged with ``TopHits.merge``, which sums the blocks' pipeline
statistics and thresholds once at the end, exactly as one search over the whole file: the
E-values use Z = the number of sequences in the database — the manifest's
``sequence_count`` (counted once when the database was built) when it has one, else the
count this pass makes. ``pyhmmer.hmmer.jackhmmer()`` is never used on a database: it
reads the whole file into memory (``read_block()``; ~3× the FASTA size).

:func:`jackhmmer` is AlphaFold's ``jackhmmer -N <n> --F1 --F2 --F3 --incE -E`` (the
binary's defaults otherwise: ``--incdomE 0.001``, seed 42, ``hand`` architecture): the
first iteration builds the query's model from the sequence alone (a phmmer-like single
pass), each further one rebuilds it from the included hits (query first) and streams the
file again, stopping early when no new sequence is included, as jackhmmer does. Its
Stockholm output is byte-identical to pyhmmer's whole-file jackhmmer (tested).
"""

from __future__ import annotations

import io
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BLOCK_ENV = "FOLDSTACK_SEARCH_BLOCK"
DEFAULT_BLOCK = 4096
# jackhmmer's own inclusion default (the binary and pyhmmer.hmmer.jackhmmer); AlphaFold
# passes --incE and -E only.
JACKHMMER_INCDOME = 0.001


def block_size() -> int:
    return max(1, int(os.environ.get(BLOCK_ENV, DEFAULT_BLOCK)))


@dataclass
class StreamStats:
    """What one streamed pass did: sequences read (Z when the manifest has none), blocks,
    the largest block (bounds memory), and where Z came from."""

    sequences: int = 0
    blocks: int = 0
    z: float | None = None
    z_source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"sequences": self.sequences, "blocks": self.blocks, "z": self.z, "z_source": self.z_source}


def stream_search(hmm, path: Path | str, options: dict[str, Any], *, cpus: int = 1, z: int | None = None,
                  block: int | None = None, stats: StreamStats | None = None):
    """``Pipeline.search_hmm(hmm, <the whole file>)``, streamed in blocks over `cpus`
    threads; returns the merged, thresholded ``TopHits`` (sorted by key)."""
    from pyhmmer.easel import SequenceFile
    from pyhmmer.plan7 import Pipeline

    alphabet = hmm.alphabet
    opts = dict(options)
    if z is not None:
        opts["Z"] = float(z)
    size = block or block_size()
    stats = stats if stats is not None else StreamStats()
    stats.sequences, stats.blocks = 0, 0

    def work(targets):
        return Pipeline(alphabet, **opts).search_hmm(hmm, targets)

    parts = []
    pending: deque[Future] = deque()
    with SequenceFile(str(path), digital=True, alphabet=alphabet) as f, \
            ThreadPoolExecutor(max_workers=max(1, cpus)) as pool:
        while True:
            targets = f.read_block(sequences=size)
            if not len(targets):
                break
            stats.sequences += len(targets)
            stats.blocks += 1
            pending.append(pool.submit(work, targets))
            del targets  # the worker holds the only reference: the block is freed when searched
            while len(pending) >= 2 * max(1, cpus):
                parts.append(pending.popleft().result())
        parts.extend(p.result() for p in pending)
    if not parts:  # an empty database: search an empty block for an empty, valid result
        from pyhmmer.easel import DigitalSequenceBlock

        parts.append(work(DigitalSequenceBlock(alphabet)))
    hits = parts[0].merge(*parts[1:]) if len(parts) > 1 else parts[0]
    hits.sort(by="key")
    stats.z = float(z) if z is not None else float(stats.sequences)
    stats.z_source = "database manifest sequence_count" if z is not None else "counted while streaming"
    return hits


def jackhmmer(sequence: str, name: str, path: Path | str, params: dict[str, Any], *, cpus: int = 1,
              z: int | None = None, stats: StreamStats | None = None) -> str:
    """jackhmmer of one sequence against the FASTA at `path`, streamed: the Stockholm
    alignment of the last iteration (query first), as the binary's ``-A``.

    `params`: AlphaFold's ``n_iter``, ``e_value``, ``F1``, ``F2``, ``F3``
    (:data:`foldstack.steps.databases.JACKHMMER`).
    """
    from pyhmmer.easel import Alphabet, KeyHash, TextSequence
    from pyhmmer.plan7 import Background, Builder, Trace

    alphabet = Alphabet.amino()
    query = TextSequence(name=name, sequence=sequence).digitize(alphabet)
    background = Background(alphabet)
    builder = Builder(alphabet, seed=42, architecture="hand")
    options = {"F1": params["F1"], "F2": params["F2"], "F3": params["F3"], "incE": params["e_value"],
               "E": params["e_value"], "incdomE": JACKHMMER_INCDOME}
    ranking = KeyHash()  # as pyhmmer's IterativeSearch: hits seen in earlier iterations
    hmm, _, _ = builder.build(query, background)
    msa = None
    for iteration in range(int(params.get("n_iter", 1))):
        n_prev = 1
        if iteration:
            hmm, _, _ = builder.build_msa(msa, background)
            n_prev = len(msa.sequences)
        hits = stream_search(hmm, path, options, cpus=cpus, z=z, stats=stats)  # sorted by key
        n_new = hits.compare_ranking(ranking)
        msa = hits.to_msa(alphabet, sequences=[query], traces=[Trace.from_sequence(query)],
                          all_consensus_cols=True, digitize=True)
        msa.name = f"{name}-i{iteration + 1}"
        msa.author = "jackhmmer (pyHMMER)"
        if n_new == 0 and len(msa.sequences) <= n_prev:  # converged
            break
    buf = io.BytesIO()
    msa.write(buf, "stockholm")
    return buf.getvalue().decode("utf-8", errors="replace")


def hmmsearch_stockholm(hmm, path: Path | str, params: dict[str, Any], *, cpus: int = 1,
                        stats: StreamStats | None = None) -> str:
    """``hmmsearch --noali <params> -A out.sto`` of `hmm` against the FASTA at `path`,
    streamed; "" when nothing is included."""
    hits = stream_search(hmm, path, dict(params), cpus=cpus, stats=stats)
    if not len(hits.included):
        return ""
    buf = io.BytesIO()
    hits.to_msa(hmm.alphabet).write(buf, "stockholm")
    return buf.getvalue().decode("utf-8", errors="replace")
