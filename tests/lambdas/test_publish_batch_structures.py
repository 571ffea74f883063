"""`structures/<target>.cif`, the run-level copy of each target's best model for bulk
download: the relaxed best model where relaxation ran, else the model as predicted."""

from __future__ import annotations

import pytest

from foldstack.core.manifest import TargetResult
from foldstack.tasks.publish_batch import _publish_target


@pytest.mark.parametrize("relaxed", [True, False])
def test_structures_holds_the_relaxed_best_model_where_there_is_one(tmp_path, relaxed):
    blobs = {"ranked_0.cif": b"data_predicted\n", "ranked_0.pdb": b"ATOM\n", "plddt.tsv": b"residue\tplddt\n"}
    if relaxed:
        blobs["relaxed_0.cif"] = b"data_relaxed\n"
    files = {rel: {"sha256": "0" * 64, "size": len(data)} for rel, data in blobs.items()}
    result = TargetResult.model_validate({"id": "t1", "files": files, "metrics": {"engine": "alphafold2"}})
    _publish_target(str(tmp_path), "run-1", result, blobs)
    best = (tmp_path / "run-1" / "structures" / "t1.cif").read_bytes()
    assert best == (b"data_relaxed\n" if relaxed else b"data_predicted\n")
    assert (tmp_path / "run-1" / "t1" / "ranked_0.cif").read_bytes() == b"data_predicted\n"  # kept as predicted
