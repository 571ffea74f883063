"""HTML reports that open offline: per target ``<run>/<target>/report.html`` and per run
``<run>/index.html``, made by Collect Outputs (which holds the structure, metrics,
provenance and cost) from what the predict step wrote.

Pure Python (string templates, every value escaped with :func:`html.escape`), so it runs
in Collect's Lambda. The 3D view uses 3Dmol.js (npm ``3dmol``, installed at setup, never
committed): one copy per run at ``<run>/assets/3Dmol-min.js``, referenced relatively;
:func:`viewer_script` finds it. Without it the report says the 3D view is unavailable and
shows everything else — it never loads anything from the network.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Container, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

VIEWER_ENV = "FOLDSTACK_VIEWER_JS"  # path of 3Dmol-min.js (Lambda/containers without node_modules)
VIEWER_ASSET = "assets/3Dmol-min.js"  # where a run's copy goes, relative to <run>/
_VIEWER_REL = ("node_modules", "3dmol", "build", "3Dmol-min.js")
DEMO_BANNER = ("DEMO WEIGHTS — these structures were predicted with random demo weights and are "
               "NOT meaningful")
_BANDS = ((90, "#0053d6", "very high (> 90)"), (70, "#65cbf3", "confident (70–90)"),
          (50, "#ffdb13", "low (50–70)"), (0, "#ff7d45", "very low (< 50)"))


def viewer_script() -> bytes | None:
    """3Dmol-min.js: ``$FOLDSTACK_VIEWER_JS``, else a copy packaged next to this module (the
    Lambda zip), else ``node_modules/3dmol`` of the checkout or the working directory; None
    if none is there."""
    candidates: list[Path] = []
    if os.environ.get(VIEWER_ENV):
        candidates.append(Path(os.environ[VIEWER_ENV]))
    here = Path(__file__).resolve().parent
    candidates.append(here / "3Dmol-min.js")
    for root in (*here.parents, Path.cwd()):
        candidates.append(root.joinpath(*_VIEWER_REL))
    for path in candidates:
        if path.is_file():
            return path.read_bytes()
    return None


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–"
    return f"{value:.{digits}f}"


def _css() -> str:
    return """<style>
body{font-family:system-ui,Arial,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.4em;margin:.2em 0} h2{font-size:1.1em;margin-top:1.2em}
table{border-collapse:collapse;margin:.4em 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:.9em}
th{background:#f2f2f2} th.sort{cursor:pointer}
.banner{background:#b00020;color:#fff;padding:.6em 1em;font-weight:bold;margin-bottom:1em}
.note{color:#555;font-size:.9em} #viewer{width:640px;height:480px;position:relative;border:1px solid #ccc}
.legend span{display:inline-block;padding:2px 8px;margin-right:4px;font-size:.8em}

.failed{color:#b00020;font-weight:bold}
.plots img{max-width:100%;border:1px solid #eee;margin:4px}
</style>"""


def _banner(demo: bool) -> str:
    return f'<div class="banner" id="demo-banner">{_e(DEMO_BANNER)}</div>' if demo else ""


def parse_plddt_tsv(text: str) -> list[tuple[str, int, float]]:
    rows = []
    for line in text.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) >= 4:
            rows.append((parts[0], int(parts[1]), float(parts[3])))
    return rows


def per_chain_plddt(rows: Sequence[tuple[str, int, float]]) -> dict[str, tuple[int, float]]:
    out: dict[str, list[float]] = {}
    for chain, _i, value in rows:
        out.setdefault(chain, []).append(value)
    return {c: (len(v), sum(v) / len(v)) for c, v in out.items()}


def _viewer_block(structure_pdb: str | None, viewer_src: str | None) -> str:
    legend = "".join(f'<span style="background:{c}">{_e(label)}</span>' for _lo, c, label in _BANDS)
    if not structure_pdb:
        return '<p class="note">No structure file to show.</p>'
    data = json.dumps(structure_pdb).replace("</", "<\\/")
    bands = json.dumps([[lo, c] for lo, c, _l in _BANDS])
    script = f"""<script>
(function() {{
  var el = document.getElementById('viewer');
  if (typeof $3Dmol === 'undefined') {{
    el.innerHTML = '<p class="note" style="padding:1em">3D view unavailable: ' +
                   'the viewer script was not shipped with this report.</p>';
    return;
  }}
  var bands = {bands};
  function colour(atom) {{
    for (var i = 0; i < bands.length; i++) {{ if (atom.b >= bands[i][0]) return bands[i][1]; }}
    return bands[bands.length - 1][1];
  }}
  var viewer = $3Dmol.createViewer(el, {{backgroundColor: 'white'}});
  viewer.addModel({data}, 'pdb');
  viewer.setStyle({{}}, {{cartoon: {{colorfunc: colour}}, stick: {{radius: 0.15, colorfunc: colour}}}});
  viewer.zoomTo();
  viewer.render();
}})();
</script>"""
    src = f'<script src="{_e(viewer_src)}"></script>' if viewer_src else ""
    return (f'<div id="viewer"></div><div class="legend">pLDDT: {legend}</div>{src}{script}')


def _relax_cell(record: Any) -> str:
    """A model's relaxation (steps.relax records): violations before -> after, or why not."""
    if not isinstance(record, Mapping) or record.get("status") in (None, "skipped"):
        return "not relaxed"
    if record.get("status") == "relaxed":
        return _e(f"relaxed: {record.get('violations_before')} → {record.get('violations_after')}")
    return f'<span title="{_e(record.get("reason"))}">relaxation failed (model kept unrelaxed)</span>'


def _build_rows(step: str, build: Any) -> list[tuple[str, Any]]:
    """A step's ``build`` provenance (core.provenance.build_info): its code, image (with the
    digest where the container knew it), job definition and, for predict, the weights."""
    if not isinstance(build, Mapping):
        return []
    rows: list[tuple[str, Any]] = [(f"{step}: code", f"foldstack {build.get('foldstack_version') or '–'}, "
                                                     f"git commit {build.get('git_commit') or '–'}")]
    image = build.get("image") or "– (local run: no container image)"
    if build.get("image_digest"):
        image = f"{image} ({build['image_digest']})"
    rows.append((f"{step}: image", image))
    rows.append((f"{step}: job definition", build.get("job_definition") or "– (local run)"))
    weights = build.get("weights")
    if isinstance(weights, Mapping):
        origin = ", ".join(f"{k} {weights[k]}" for k in ("origin", "revision") if weights.get(k))
        rows.append((f"{step}: weights digest", f"sha256 {weights.get('digest') or '–'}"
                                                f"{' (' + origin + ')' if origin else ''}"))
    return rows


def target_report(target: Mapping[str, Any], *, structure_pdb: str | None, plddt_tsv: str | None,
                  run_id: str, viewer_src: str | None = "../" + VIEWER_ASSET) -> str:
    """``report.html`` of one target. ``target``: its manifest entry (dict form: id, length,
    chains, files, metrics, provenance, cost); files are linked relative to the report."""
    metrics = dict(target.get("metrics") or {})
    files = dict(target.get("files") or {})
    provenance = dict(target.get("provenance") or {})
    demo = bool(metrics.get("demo_weights"))
    tid = str(target.get("id"))
    summary = [
        ("engine", metrics.get("engine")), ("preset", metrics.get("preset")),
        ("best model", metrics.get("model_name")), ("length", target.get("length")),
        ("chains", target.get("chains")), ("size class", target.get("size_class")),
        ("mean pLDDT", _num(metrics.get("mean_plddt"))), ("pTM", _num(metrics.get("ptm"), 4)),
    ]
    if metrics.get("iptm") is not None:
        summary += [("ipTM", _num(metrics.get("iptm"), 4)),
                    ("ranking confidence", _num(metrics.get("ranking_confidence"), 4))]
    summary += [("max PAE (Å)", _num(metrics.get("max_pae")))]
    if metrics.get("msa_depth") is not None:
        summary += [("MSA depth", metrics.get("msa_depth")),
                    ("MSA coverage (mean / min per residue)",
                     f"{_num(metrics.get('msa_coverage_mean'), 1)} / {metrics.get('msa_coverage_min')}")]
    parts = [f'<table id="summary">{"".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in summary)}</table>']

    chains = per_chain_plddt(parse_plddt_tsv(plddt_tsv)) if plddt_tsv else {}
    if chains:
        rows = "".join(f"<tr><td>{_e(c)}</td><td>{n}</td><td>{v:.2f}</td></tr>" for c, (n, v) in chains.items())
        parts.append(f'<h2>Per-chain pLDDT</h2><table id="chains"><tr><th>chain</th><th>residues</th>'
                     f'<th>mean pLDDT</th></tr>{rows}</table>')

    models = [m for m in metrics.get("models") or [] if isinstance(m, Mapping)]
    if models:
        rows = []
        for rank, m in enumerate(models):
            links = " ".join(f'<a href="{quote(f"{stem}_{rank}.{ext}")}">{label}{ext}</a>'
                             for stem, label in (("ranked", ""), ("relaxed", "relaxed ")) for ext in ("pdb", "cif")
                             if f"{stem}_{rank}.{ext}" in files)
            rows.append(f"<tr><td>ranked_{rank}</td><td>{_e(m.get('model_name'))}</td>"
                        f"<td>{_num(m.get('mean_plddt'))}</td><td>{_num(m.get('ptm'), 4)}</td>"
                        f"<td>{_num(m.get('ranking_confidence'), 4)}</td><td>{_relax_cell(m.get('relax'))}</td>"
                        f"<td>{links}</td></tr>")
        parts.append('<h2>Models (best first)</h2><table id="models"><tr><th>rank</th><th>model</th>'
                     '<th>mean pLDDT</th><th>pTM</th><th>ranking confidence</th>'
                     '<th>Amber relaxation (violating residues)</th><th>files</th></tr>'
                     + "".join(rows) + "</table>")

    plots = [(name, title) for name, title in (("plots/plddt.png", "pLDDT per residue"),
                                               ("plots/pae.png", "Predicted aligned error (chain boundaries as lines)"),
                                               ("plots/msa_coverage.png", "MSA coverage"))
             if name in files]
    if plots:
        parts.append('<h2>Plots</h2><div class="plots">' + "".join(
            f'<figure><img src="{quote(n)}" alt="{_e(t)}"><figcaption>{_e(t)}</figcaption></figure>'
            for n, t in plots) + "</div>")

    prov_rows: list[tuple[str, Any]] = []
    for step, info in provenance.items():
        if not isinstance(info, Mapping):
            continue
        versions = info.get("tool_versions") or {}
        if versions:
            prov_rows.append((f"{step}: versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))))
        for key in ("db_preset", "databases", "msa_cache", "pairing"):
            if info.get(key) is not None:
                val = info[key]
                if isinstance(val, Mapping):
                    val = ", ".join(f"{k} {v}" for k, v in sorted(val.items()))
                prov_rows.append((f"{step}: {key}", val))
        prov_rows += _build_rows(step, info.get("build"))
    for key in ("weights", "weights_version", "params"):
        if metrics.get(key) is not None:
            prov_rows.append((key, json.dumps(metrics[key]) if not isinstance(metrics[key], str) else metrics[key]))
    prov_rows.append(("weights", "random DEMO weights" if demo else "released weights"))
    cost = target.get("cost") or {}
    if isinstance(cost, Mapping) and cost.get("usd") is not None:
        prov_rows.append(("estimated cost (USD)", _num(cost.get("usd"), 4)))
    prov_rows.append(("run", run_id))
    parts.append('<h2>Provenance</h2><table id="provenance">' + "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in prov_rows) + "</table>")

    downloads = [n for n in sorted(files) if n.endswith((".pdb", ".cif", ".json", ".tsv", ".a3m"))]
    if downloads:
        parts.append('<h2>Files</h2><p class="note">' + " · ".join(
            f'<a href="{quote(n)}">{_e(n)}</a>' for n in downloads) + "</p>")

    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{_e(tid)} · foldstack report</title>{_css()}</head><body>'
            f'{_banner(demo)}<p class="note"><a href="../index.html">← run {_e(run_id)}</a></p>'
            f'<h1>{_e(tid)}</h1><h2>Structure, coloured by pLDDT</h2>{_viewer_block(structure_pdb, viewer_src)}'
            f"\n{body}\n</body></html>\n")


def _histogram_svg(values: Sequence[float], *, title: str, lo: float, hi: float, bins: int = 10) -> str:
    width, height, pad = 320, 160, 24
    counts = [0] * bins
    for v in values:
        i = min(bins - 1, max(0, int((v - lo) / (hi - lo) * bins)))
        counts[i] += 1
    top = max(counts) or 1
    bar = (width - 2 * pad) / bins
    rects = "".join(
        f'<rect x="{pad + i * bar:.1f}" y="{height - pad - c / top * (height - 2 * pad):.1f}" '
        f'width="{bar - 2:.1f}" height="{c / top * (height - 2 * pad):.1f}" fill="#4a78c2"/>'
        for i, c in enumerate(counts))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">'
            f'<title>{_e(title)}</title><text x="{pad}" y="14" font-size="12">{_e(title)} (n={len(values)})</text>'
            f'{rects}<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>'
            f'<text x="{pad}" y="{height - 6}" font-size="10">{lo:g}</text>'
            f'<text x="{width - pad - 10}" y="{height - 6}" font-size="10">{hi:g}</text></svg>')


# index.html's table: the columns of summary.tsv (core.manifest.SUMMARY_COLUMNS), one row per target
INDEX_COLUMNS = (("target", "target"), ("status", "status"), ("engine", "engine"), ("length", "length"),
                 ("chains", "chains"), ("size_class", "size class"), ("mean_plddt", "mean pLDDT"), ("ptm", "pTM"),
                 ("iptm", "ipTM"), ("ranking_confidence", "ranking confidence"), ("max_pae", "max PAE"),
                 ("msa_depth", "MSA depth"), ("runtime_s", "runtime (s)"), ("cost_usd", "cost (USD)"),
                 ("failure_code", "failure"))
_DIGITS = {"mean_plddt": 2, "ptm": 4, "iptm": 4, "ranking_confidence": 4, "max_pae": 2, "runtime_s": 1,
           "cost_usd": 4}


def _index_cell(key: str, row: Mapping[str, Any], reports: Container[str]) -> str:
    value = row.get(key)
    if key == "target":
        tid = str(value)
        return f'<a href="{quote(tid)}/report.html">{_e(tid)}</a>' if tid in reports else _e(tid)
    if key in _DIGITS:
        return _num(value, _DIGITS[key])
    if key == "status" and value == "failed":
        return '<span class="failed">failed</span>'
    return "–" if value is None else _e(value)


def index_page(run_id: str, rows: Sequence[Mapping[str, Any]], *, reports: Container[str] = (),
               demo: bool = False, cost: Mapping[str, Any] | None = None) -> str:
    """``index.html`` of a run: a sortable table of every target (``rows``: the summary rows
    of summary.tsv, failed targets included, in the run's order), linking the report of each
    target in ``reports``, and the distribution of pLDDT (and ipTM for complexes)."""
    plddts = [float(r["mean_plddt"]) for r in rows if isinstance(r.get("mean_plddt"), int | float)]
    iptms = [float(r["iptm"]) for r in rows if isinstance(r.get("iptm"), int | float)]
    failed = sum(1 for r in rows if r.get("status") == "failed")
    body_rows = ["<tr>" + "".join(f"<td>{_index_cell(k, r, reports)}</td>" for k, _label in INDEX_COLUMNS) + "</tr>"
                 for r in rows]
    head = "".join(f'<th class="sort" data-col="{i}">{_e(c)}</th>' for i, (_k, c) in enumerate(INDEX_COLUMNS))
    charts = _histogram_svg(plddts, title="mean pLDDT", lo=0, hi=100)
    if iptms:
        charts += _histogram_svg(iptms, title="ipTM", lo=0, hi=1)
    total = (cost or {}).get("estimated_total_usd")
    sort_js = """<script>
document.querySelectorAll('#targets th.sort').forEach(function(th) {
  th.addEventListener('click', function() {
    var table = document.getElementById('targets'), body = table.tBodies[0];
    var col = +th.dataset.col, asc = th.dataset.dir !== 'asc';
    th.dataset.dir = asc ? 'asc' : 'desc';
    var rows = Array.prototype.slice.call(body.rows);
    function key(r) { var t = r.cells[col].textContent.trim(); var n = parseFloat(t);
                      return isNaN(n) ? t.toLowerCase() : n; }
    rows.sort(function(a, b) { var x = key(a), y = key(b);
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
    rows.forEach(function(r) { body.appendChild(r); });
  });
});
</script>"""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(run_id)} · foldstack run'
            f'</title>{_css()}</head><body>{_banner(demo)}<h1>Run {_e(run_id)}</h1>'
            f'<p class="note">{len(rows)} target(s), {failed} failed; estimated cost '
            f'{"–" if total is None else _e(_num(total, 4)) + " USD"}. Click a column to sort.</p>'
            f'<table id="targets"><thead><tr>{head}</tr></thead><tbody>{"".join(body_rows)}</tbody></table>'
            f'<h2>Distribution</h2><div id="charts">{charts}</div>{sort_js}\n</body></html>\n')
