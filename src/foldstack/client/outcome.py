"""How a run's targets ended, in one plain sentence (the CLI and :class:`~foldstack.client.run.Run`
use this, and only this, to say it)::

    9,946 of 10,000 targets folded; 54 failed (41 out_of_memory, 13 bad_input) — failures.tsv

Read from the published manifest (``outcome`` and ``failures``,
:class:`foldstack.core.manifest.Manifest`): a run that is ``partial`` SUCCEEDED with some
targets failed within its failure budget; one that is ``failed`` FAILED with more, and still
published what folded.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from foldstack.core.manifest import FAILURES_TSV, Manifest, count_text


def outcome_sentence(manifest: Manifest) -> str:
    """``N of M targets folded`` and, when any failed, how many per code and where the list is."""
    folded, failed = len(manifest.targets), len(manifest.failures)
    text = f"{folded:,} of {folded + failed:,} targets folded"
    if failed:
        text += f"; {failed:,} failed ({count_text(manifest.failures)}) — {FAILURES_TSV}"
    return text


def cost_sentence(manifest: Manifest) -> str | None:
    """The run's estimated cost in one line (:func:`foldstack.cost.cost_message`): a partial
    total says so and why (jobs no price table covers are listed in the manifest's ``cost``)."""
    from foldstack.cost import cost_message

    return cost_message(manifest.cost)


def outcome_summary(manifest: Manifest) -> dict[str, Any]:
    """The same, for JSON output: ``outcome``, counts, failures per code and the sentence."""
    return {"outcome": manifest.outcome, "targets_folded": len(manifest.targets),
            "targets_failed": len(manifest.failures),
            "failed_by_code": dict(Counter(f.code for f in manifest.failures).most_common()),
            "outcome_message": outcome_sentence(manifest)}
