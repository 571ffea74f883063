"""Writing a prediction: ranked_0.pdb/.cif (gemmi), plddt.tsv, pae.json, plots, metrics.

Both engines hand over a :class:`Prediction` in AlphaFold's atom37 representation with
pLDDT on the 0–100 scale; everything after that is shared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CHAIN_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass
class Prediction:
    aatype: np.ndarray  # (L,) AlphaFold restype_order_with_x indices (20 = X)
    atom_positions: np.ndarray  # (L, 37, 3) Å
    atom_mask: np.ndarray  # (L, 37)
    residue_index: np.ndarray  # (L,) 1-based, per chain
    chain_index: np.ndarray  # (L,) 0-based chain number
    plddt: np.ndarray  # (L,) 0-100
    model_name: str
    pae: np.ndarray | None = None  # (L, L) Å
    max_pae: float | None = None
    ptm: float | None = None
    iptm: float | None = None
    ranking_confidence: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_residues(self) -> int:
        return int(self.aatype.shape[0])

    @property
    def mean_plddt(self) -> float:
        return float(np.mean(self.plddt))


def _structure(pred: Prediction, name: str):
    import gemmi
    from alphafold.common import residue_constants as rc

    st = gemmi.Structure()
    st.name = name
    model = gemmi.Model(1) if _model_takes_int() else gemmi.Model("1")
    serial = 0
    for chain_no in sorted(set(int(c) for c in pred.chain_index)):
        chain = gemmi.Chain(CHAIN_IDS[chain_no % len(CHAIN_IDS)])
        for i in np.nonzero(pred.chain_index == chain_no)[0]:
            res = gemmi.Residue()
            one = rc.restypes_with_x[int(pred.aatype[i])]
            res.name = rc.restype_1to3.get(one, "UNK")
            res.seqid = gemmi.SeqId(int(pred.residue_index[i]), " ")
            res.entity_type = gemmi.EntityType.Polymer
            for j, atom_name in enumerate(rc.atom_types):
                if pred.atom_mask[i, j] < 0.5:
                    continue
                serial += 1
                atom = gemmi.Atom()
                atom.name = atom_name
                atom.element = gemmi.Element(atom_name[0])
                atom.pos = gemmi.Position(*map(float, pred.atom_positions[i, j]))
                atom.occ = 1.0
                atom.b_iso = float(pred.plddt[i])
                atom.serial = serial
                res.add_atom(atom)
            chain.add_residue(res)
        model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    return st


def _model_takes_int() -> bool:
    import gemmi

    try:
        gemmi.Model(1)
        return True
    except TypeError:
        return False


def write_prediction(out_dir: Path, pred: Prediction, *, target: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write every output file into `out_dir`; return the metrics written."""
    st = _structure(pred, target)
    st.write_pdb(str(out_dir / "ranked_0.pdb"))
    doc = st.make_mmcif_document()
    doc.write_file(str(out_dir / "ranked_0.cif"))

    from alphafold.common import residue_constants as rc

    lines = ["chain\tresidue_index\tresidue_name\tplddt"]
    for i in range(pred.n_residues):
        chain = CHAIN_IDS[int(pred.chain_index[i]) % len(CHAIN_IDS)]
        name = rc.restype_1to3.get(rc.restypes_with_x[int(pred.aatype[i])], "UNK")
        lines.append(f"{chain}\t{int(pred.residue_index[i])}\t{name}\t{float(pred.plddt[i]):.2f}")
    (out_dir / "plddt.tsv").write_text("\n".join(lines) + "\n")

    if pred.pae is not None:
        pae = np.round(np.asarray(pred.pae, dtype=np.float64), 2)
        max_pae = float(pred.max_pae) if pred.max_pae is not None else float(pae.max())
        (out_dir / "pae.json").write_text(json.dumps(
            [{"predicted_aligned_error": pae.tolist(), "max_predicted_aligned_error": round(max_pae, 2)}]))

    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    _plot_plddt(plots / "plddt.png", pred, target, metrics)
    if pred.pae is not None:
        _plot_pae(plots / "pae.png", pred, target)

    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def base_metrics(pred: Prediction, *, engine: str, preset: str, demo: bool, warnings: list[str],
                 timings: dict[str, float], n_chains: int) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "engine": engine,
        "preset": preset,
        "model_name": pred.model_name,
        "mean_plddt": round(pred.mean_plddt, 2),
        "ptm": None if pred.ptm is None else round(float(pred.ptm), 4),
        "n_residues": pred.n_residues,
        "chains": n_chains,
        "demo_weights": demo,
        "warnings": list(warnings),
        "timings": dict(timings),
    }
    if pred.iptm is not None:
        metrics["iptm"] = round(float(pred.iptm), 4)
    if pred.ranking_confidence is not None:
        metrics["ranking_confidence"] = round(float(pred.ranking_confidence), 4)
    if pred.max_pae is not None:
        metrics["max_pae"] = round(float(pred.max_pae), 2)
    metrics.update(pred.extra)
    return metrics


def _plot_plddt(path: Path, pred: Prediction, target: str, metrics: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    x = np.arange(1, pred.n_residues + 1)
    for lo, hi, colour in ((90, 100, "#0053d6"), (70, 90, "#65cbf3"), (50, 70, "#ffdb13"), (0, 50, "#ff7d45")):
        ax.axhspan(lo, hi, color=colour, alpha=0.15, lw=0)
    ax.plot(x, pred.plddt, color="black", lw=1.2)
    for b in np.nonzero(np.diff(pred.chain_index))[0]:
        ax.axvline(b + 1.5, color="grey", ls="--", lw=0.8)
    ax.set_xlim(1, max(2, pred.n_residues))
    ax.set_ylim(0, 100)
    ax.set_xlabel("residue")
    ax.set_ylabel("pLDDT")
    title = f"{target} · {metrics.get('engine')} {pred.model_name} · mean pLDDT {pred.mean_plddt:.1f}"
    if metrics.get("demo_weights"):
        title += "\nDEMO WEIGHTS — not a meaningful structure"
    ax.set_title(title, fontsize=9, color="firebrick" if metrics.get("demo_weights") else "black")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_pae(path: Path, pred: Prediction, target: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=100)
    im = ax.imshow(pred.pae, cmap="Greens_r", vmin=0, vmax=max(1.0, float(pred.max_pae or np.max(pred.pae))))
    fig.colorbar(im, ax=ax, label="expected position error (Å)")
    ax.set_title(f"{target} · PAE", fontsize=9)
    ax.set_xlabel("scored residue")
    ax.set_ylabel("aligned residue")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
