"""The FSC plot and a one-page HTML report for a CryoEM run (the fold reports' style:
a title, a summary table, the plots, the per-stage table; no external assets)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any


def plot_fsc(path: Path, curve: list[dict[str, float]], *, resolution: float, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inv = [1.0 / c["resolution_angstrom"] for c in curve]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    ax.plot(inv, [c["fsc_corrected"] for c in curve], color="black", lw=1.5, label="corrected (masked)")
    ax.plot(inv, [c["fsc_unmasked"] for c in curve], color="#0053d6", lw=1.0, label="unmasked")
    ax.plot(inv, [c["fsc_masked"] for c in curve], color="#ff7d45", lw=1.0, label="masked")
    ax.axhline(0.143, color="grey", ls="--", lw=0.8)
    if resolution > 0:
        ax.axvline(1.0 / resolution, color="firebrick", ls=":", lw=0.8)
    ax.set_ylim(-0.1, 1.05)
    ax.set_xlabel("resolution (1/Å)")
    ax.set_ylabel("Fourier shell correlation")
    ax.set_title(f"{title} · gold-standard FSC = 0.143 at {resolution:.1f} Å", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, list):
        return "; ".join(map(str, value))
    return "" if value is None else str(value)


def write_report(path: Path, summary: dict[str, Any]) -> Path:
    """`summary`: what :func:`foldstack.cryoem.pipeline.run_local` returns."""
    res = summary["results"]
    facts = [
        ("gold-standard resolution (FSC 0.143)", f"{res['resolution']:.2f} Å"),
        ("B-factor used for sharpening", f"{res['bfactor']:.0f} Å²"),
        ("particles refined", str(res["particles_refined"])),
        ("micrographs kept / total", f"{res['micrographs_kept']} / {res['micrographs']}"),
        ("initial model", summary["initial_model"]),
        ("CPU seconds (all stages)", f"{summary['cpu_seconds']:.0f}"),
    ]
    cost = summary.get("cost") or {}
    if cost.get("estimated_total_usd") is not None:
        facts.append(("estimated cost on AWS (all stages)", f"{cost['estimated_total_usd']:.4f} "
                      f"{cost.get('currency', 'USD')} ({cost.get('region')}, prices {cost.get('price_table_date')})"))
    guard = summary.get("bias_guard")
    if guard:
        facts.append(("reference-bias guard", f"{'DISAGREE' if guard['flagged'] else 'agree'}: "
                      f"the two starts' maps agree to {guard['cross_resolution_fsc_0.143']:.1f} Å (FSC 0.143)"))
    flagged = bool(guard and guard["flagged"])
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td{' class=flag' if flagged and k.startswith('reference') else ''}>"
                   f"{html.escape(v)}</td></tr>" for k, v in facts)
    stages = [{"stage": s, **v, "usd": (v.get("cost") or {}).get("usd"),
               "instance": (v.get("cost") or {}).get("instance_type")} for s, v in summary["stages"].items()]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>foldstack cryoem · {html.escape(summary['run_id'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin:1em 0}}
th,td{{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}}.flag{{color:firebrick}}</style>
</head><body>
<h1>CryoEM run {html.escape(summary['run_id'])}</h1>
<p>Dataset {html.escape(str(summary['dataset']))}; RELION {html.escape(summary['relion_version'])}.</p>
<table>{rows}</table>
<h2>Gold-standard FSC</h2><img src="fsc.png" alt="FSC curve">
<h2>Micrographs</h2>{_table(summary['micrographs'], ['micrograph', 'kept', 'total_drift_px', 'defocus',
                                                    'ctf_resolution', 'ctf_fom', 'picks', 'particles', 'reasons'])}
<h2>Stages</h2>{_table(stages, ['stage', 'wall_seconds', 'cpu_seconds', 'peak_rss_mib', 'usd', 'instance'])}
</body></html>
"""
    path.write_text(page)
    return path
