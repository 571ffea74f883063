"""Writing a prediction: every ranked model in AlphaFold's layout, plots, metrics.

Both engines hand over :class:`Prediction` objects (best first) in AlphaFold's atom37
representation with pLDDT on the 0–100 scale; everything after that is shared:
``ranked_<i>.pdb/.cif`` per model (pLDDT as B-factor; demo-weight models carry a
``REMARK 250`` block / ``_foldstack.demo_weights`` item), ``ranking_debug.json``,
``ranked_<i>.metrics.json`` (+ ``ranked_<i>.pae.json``) per model, ``plddt.tsv`` and
``pae.json`` of the best model, ``plots/`` (pLDDT, PAE with chain boundaries, the MSA
coverage of an AlphaFold2 target) and ``metrics.json``. The Amber-relaxed models
(``relaxed_<i>``, :mod:`foldstack.steps.relax`) are written through :func:`write_marked` too.
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


def structure_of(pred: Prediction, name: str):
    """The model as a gemmi structure (pLDDT as B-factor), as ``ranked_<i>`` files hold it."""
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


DEMO_REMARK = ("DEMO WEIGHTS: this model was predicted with random demo weights; "
               "it is NOT a meaningful structure")


def _pdb_demo_remark() -> str:
    import textwrap

    lines = ["REMARK 250", "REMARK 250 FOLDSTACK DEMO WEIGHTS"]
    lines += [f"REMARK 250 {part}" for part in textwrap.wrap(DEMO_REMARK, 68)]
    return "\n".join(lines) + "\n"


def write_structure(out_dir: Path, stem: str, pred: Prediction, *, target: str, demo: bool) -> None:
    """``<stem>.pdb`` and ``<stem>.cif``; demo-weight models are marked in both."""
    write_marked(out_dir, stem, structure_of(pred, target), demo=demo)


def write_marked(out_dir: Path, stem: str, st, *, demo: bool) -> None:
    """Write gemmi structure `st` as ``<stem>.pdb`` and ``<stem>.cif``, demo-marked if `demo`
    (the relaxed models are written through here too)."""
    pdb = st.make_pdb_string()
    if demo:  # REMARK records go before the coordinates
        lines = pdb.splitlines(keepends=True)
        at = next((i for i, line in enumerate(lines) if not line.startswith(("HEADER", "TITLE", "REMARK"))),
                  len(lines))
        pdb = "".join(lines[:at]) + _pdb_demo_remark() + "".join(lines[at:])
    (out_dir / f"{stem}.pdb").write_text(pdb)
    doc = st.make_mmcif_document()
    if demo:
        block = doc.sole_block()
        block.set_pair("_foldstack.demo_weights", "yes")
        block.set_pair("_foldstack.demo_warning", _cif_quote(DEMO_REMARK))
    doc.write_file(str(out_dir / f"{stem}.cif"))


def _cif_quote(text: str) -> str:
    import gemmi

    return gemmi.cif.quote(text)


def _model_metrics(pred: Prediction, rank: int) -> dict[str, Any]:
    out: dict[str, Any] = {"rank": rank, "model_name": pred.model_name, "mean_plddt": round(pred.mean_plddt, 2),
                           "ptm": None if pred.ptm is None else round(float(pred.ptm), 4)}
    if pred.iptm is not None:
        out["iptm"] = round(float(pred.iptm), 4)
    if pred.ranking_confidence is not None:
        out["ranking_confidence"] = round(float(pred.ranking_confidence), 4)
    if pred.pae is not None:
        out["max_pae"] = round(float(pred.max_pae if pred.max_pae is not None else np.max(pred.pae)), 2)
    for key in ("seed", "bucket", "compiled"):
        if key in pred.extra:
            out[key] = pred.extra[key]
    return out


def _pae_json(pred: Prediction) -> str:
    pae = np.round(np.asarray(pred.pae, dtype=np.float64), 2)
    max_pae = float(pred.max_pae) if pred.max_pae is not None else float(pae.max())
    return json.dumps([{"predicted_aligned_error": pae.tolist(), "max_predicted_aligned_error": round(max_pae, 2)}])


def ranking_debug(models: list[Prediction]) -> dict[str, Any]:
    """AlphaFold's ``ranking_debug.json``: each model's ranking score and the order, best
    first (``iptm+ptm`` for complexes scored by ipTM, else ``plddts``)."""
    multimer = any(p.iptm is not None for p in models)
    key = "iptm+ptm" if multimer else "plddts"

    def score(p: Prediction) -> float:
        if multimer and p.ranking_confidence is not None:
            return round(float(p.ranking_confidence), 4)
        return round(p.mean_plddt, 2)

    names = [p.model_name for p in models]
    if len(set(names)) != len(names):  # seeds of one model: make the keys unique
        names = [f"{p.model_name}_rank{i}" for i, p in enumerate(models)]
    return {key: {n: score(p) for n, p in zip(names, models, strict=True)}, "order": names}


def write_prediction(out_dir: Path, pred: Prediction, *, target: str, metrics: dict[str, Any],
                     models: list[Prediction] | None = None,
                     relax: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write every output file into `out_dir`; return the metrics written. ``models``: every
    model, best first (``pred`` is the best); default ``[pred]``. ``relax``: each model's
    relaxation record (:func:`foldstack.steps.relax.relax_models`), into its
    ``ranked_<i>.metrics.json`` and ``ranking_debug.json``."""
    models = list(models) if models else [pred]
    demo = bool(metrics.get("demo_weights"))
    for rank, model in enumerate(models):
        write_structure(out_dir, f"ranked_{rank}", model, target=target, demo=demo)
        per_model = _model_metrics(model, rank)
        if relax is not None:
            per_model["relax"] = relax[rank]
        if model.pae is not None:
            (out_dir / f"ranked_{rank}.pae.json").write_text(_pae_json(model))
        (out_dir / f"ranked_{rank}.metrics.json").write_text(json.dumps(per_model, indent=2, sort_keys=True) + "\n")
    debug = ranking_debug(models)
    if relax is not None:  # beside AlphaFold's keys, by the same model names
        debug["relax"] = dict(zip(debug["order"], relax, strict=True))
    (out_dir / "ranking_debug.json").write_text(json.dumps(debug, indent=2) + "\n")

    from alphafold.common import residue_constants as rc

    lines = ["chain\tresidue_index\tresidue_name\tplddt"]
    for i in range(pred.n_residues):
        chain = CHAIN_IDS[int(pred.chain_index[i]) % len(CHAIN_IDS)]
        name = rc.restype_1to3.get(rc.restypes_with_x[int(pred.aatype[i])], "UNK")
        lines.append(f"{chain}\t{int(pred.residue_index[i])}\t{name}\t{float(pred.plddt[i]):.2f}")
    (out_dir / "plddt.tsv").write_text("\n".join(lines) + "\n")

    if pred.pae is not None:
        (out_dir / "pae.json").write_text(_pae_json(pred))

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
    for b in np.nonzero(np.diff(pred.chain_index))[0]:  # chain boundaries
        ax.axvline(b + 0.5, color="black", lw=0.8)
        ax.axhline(b + 0.5, color="black", lw=0.8)
    ax.set_title(f"{target} · PAE", fontsize=9)
    ax.set_xlabel("scored residue")
    ax.set_ylabel("aligned residue")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def msa_coverage(plots_dir: Path, msa: np.ndarray, *, target: str) -> dict[str, Any]:
    """ColabFold-style MSA coverage plot (``plots/msa_coverage.png``): every MSA row over
    the residues it covers, coloured by identity to the query, sorted by identity, with
    the per-residue depth on top. ``msa``: (N, L) AlphaFold residue indices (21 = gap),
    query first. Returns ``{"msa_depth", "msa_coverage_mean", "msa_coverage_min"}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    msa = np.asarray(msa)
    if msa.ndim != 2 or msa.shape[0] == 0:
        return {}
    gap = 21
    covered = msa != gap
    identity = ((msa == msa[0]) & covered).sum(axis=1) / np.maximum(1, covered.sum(axis=1))  # over aligned columns
    order = np.argsort(-identity, kind="stable")
    shown = np.where(covered[order], identity[order][:, None], np.nan)
    depth = covered.sum(axis=0)
    plots_dir.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    im = ax.imshow(shown, aspect="auto", cmap="rainbow_r", vmin=0, vmax=1, interpolation="nearest",
                   extent=(0.5, msa.shape[1] + 0.5, msa.shape[0] - 0.5, -0.5))
    ax.plot(np.arange(1, msa.shape[1] + 1), depth, color="black", lw=1.2)
    fig.colorbar(im, ax=ax, label="sequence identity to query")
    ax.set_xlim(0.5, msa.shape[1] + 0.5)
    ax.set_ylim(-0.5, max(msa.shape[0], int(depth.max())) + 0.5)
    ax.set_xlabel("residue")
    ax.set_ylabel("sequences")
    ax.set_title(f"{target} · MSA coverage ({msa.shape[0]} sequences)", fontsize=9)
    fig.tight_layout()
    fig.savefig(plots_dir / "msa_coverage.png")
    plt.close(fig)
    return {"msa_depth": int(msa.shape[0]), "msa_coverage_mean": round(float(depth.mean()), 1),
            "msa_coverage_min": int(depth.min())}


def msa_coverage_from_features(plots_dir: Path, features: Path, *, target: str) -> dict[str, Any]:
    """:func:`msa_coverage` of a features.npz (its ``msa`` array); {} if it has none."""
    with np.load(features, allow_pickle=False) as data:
        if "msa" not in data.files:
            return {}
        msa = np.asarray(data["msa"])
    if msa.ndim == 3:  # one-hot
        msa = msa.argmax(-1)
    return msa_coverage(plots_dir, msa, target=target)
