"""The HTML report: one self-contained file (inline CSS, SVG and PNG; no scripts, no network).

:func:`render` turns an analysis result (:func:`analysis.scorecard.analyze`) into HTML: the verdict
in a paragraph, failures, the scorecard table, then per fingerprint three 2-D maps (coloured by
cluster, by ground truth, by lineage), basin sizes with exemplar models, the clusters x ground-truth
confusion matrix, and for distance fingerprints a dendrogram and a cluster-ordered heat-map; then a
forecast curve when one exists, and the run's config and provenance. A map of more than
:data:`MAX_POINTS` models draws a fixed random sample of them. Every string that comes from
data (model ids, labels, names, errors) goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
import zlib
from html import escape
from typing import Any

import numpy as np

from analysis.metrics import natural_key
from analysis.verdicts import css_class

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79"]
MAX_POINTS = 5000  # a scatter plot draws at most this many models (a fixed random sample beyond)


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:20px auto;max-width:1320px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:34px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{margin:26px 0 6px}
.sub{color:#666;font-size:.9em}table{border-collapse:collapse;margin:8px 0;font-size:.88em}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#f4f4f4}.l{text-align:left}
.deep{background:#d5f0d5}.noise{background:#fde0c2}.both{background:#e4d9f5}.none{background:#eee}.failrow{background:#f9caca}
.fail{background:#fbe3e3;padding:8px 12px;border-left:5px solid #c00;margin:8px 0}
.ok{background:#eaf5ea;padding:8px 12px;border-left:5px solid #3a3;margin:8px 0}
.maps{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}figure{margin:0}figcaption{font-size:.82em;color:#444;text-align:center}
.legend{max-width:300px;font-size:.75em}.legend span{display:inline-block;margin-right:8px}
.sw{display:inline-block;width:9px;height:9px;margin-right:3px;border-radius:50%}
pre{background:#f7f7f7;padding:10px;overflow:auto;font-size:.78em;max-height:420px}
img.hm{image-rendering:pixelated;border:1px solid #ccc}code{background:#f3f3f3;padding:0 3px}
"""


# -- small formatting helpers --------------------------------------------------------------------
def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return escape(str(v))


def colors(cats: list[str]) -> dict[str, str]:
    """Category -> colour: a fixed palette, then golden-angle hues for many categories."""
    uniq = sorted(set(cats), key=natural_key)
    out = {}
    for i, c in enumerate(uniq):
        out[c] = "#999999" if c in ("-1", "None", "") else (PALETTE[i] if i < len(PALETTE) else f"hsl({(i * 137.508) % 360:.0f},60%,50%)")
    return out


def legend(col: dict[str, str], limit: int = 14) -> str:
    items = list(col.items())
    spans = "".join(f'<span><i class="sw" style="background:{v}"></i>{escape(k)}</span>' for k, v in items[:limit])
    more = f"<span>… and {len(items) - limit} more</span>" if len(items) > limit else ""
    return f'<div class="legend">{spans}{more}</div>'


# -- plots ---------------------------------------------------------------------------------------
def shown_points(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Indices of the models a scatter plot draws: all of them, or a fixed random ``limit`` (sorted),
    the same for every plot of a report, so that the three maps of a fingerprint show the same models."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))


def scatter(xy: list[list[float]], cats: list[str], ids: list[str], title: str, size: int = 290,
            limit: int = MAX_POINTS) -> str:
    """An inline-SVG scatter plot coloured by category; each point's tooltip names the model.

    More than ``limit`` models: a fixed random sample of ``limit`` is drawn (the caption says so),
    since a page with 10^5 SVG circles per map is too heavy to open. The axes span every model.
    """
    if not xy:
        return f"<figure><div class='sub'>(no models)</div><figcaption>{escape(title)}</figcaption></figure>"
    a = np.asarray(xy, dtype=float).reshape(-1, 2)
    pad = 10
    lo, span = a.min(0), np.maximum(np.ptp(a, 0), 1e-9)
    col = colors(cats)
    show = shown_points(len(a), limit)
    if len(show) < len(a):
        title = f"{title}; {len(show)} of {len(a)} models shown (a fixed random sample)"
    pts = []
    for i in show.tolist():
        (x, y), c, mid = a[i], cats[i], ids[i]
        cx = pad + (x - lo[0]) / span[0] * (size - 2 * pad)
        cy = size - pad - (y - lo[1]) / span[1] * (size - 2 * pad)
        pts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.3" fill="{col[c]}" fill-opacity="0.85" stroke="#333" '
                   f'stroke-width="0.3"><title>{escape(str(mid))}: {escape(str(c))}</title></circle>')
    return (f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
            f'aria-label="{escape(title)}" style="border:1px solid #ccc;background:#fff">{"".join(pts)}</svg>'
            f"<figcaption>{escape(title)}</figcaption>{legend(col)}</figure>")


def bars(sizes: list[tuple[str, int]], title: str, width: int = 290) -> str:
    """Horizontal bars (basin sizes)."""
    if not sizes:
        return ""
    col = colors([k for k, _ in sizes])
    h = 18
    top = max(v for _, v in sizes) or 1
    rows = []
    for i, (k, v) in enumerate(sizes):
        w = (width - 110) * v / top
        rows.append(f'<text x="0" y="{i * h + 13}" font-size="11">{escape(k)}</text>'
                    f'<rect x="70" y="{i * h + 3}" width="{w:.1f}" height="{h - 6}" fill="{col[k]}"/>'
                    f'<text x="{74 + w:.1f}" y="{i * h + 13}" font-size="11">{v}</text>')
    return (f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{len(sizes) * h + 4}" role="img" '
            f'aria-label="{escape(title)}">{"".join(rows)}</svg><figcaption>{escape(title)}</figcaption></figure>')


def png(rgb: np.ndarray) -> bytes:
    """Encode an ``[h, w, 3]`` uint8 image as PNG (zlib only: no imaging library needed)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[i].tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def heatmap(d: np.ndarray, order: np.ndarray, title: str, size: int = 290) -> str:
    """A distance heat-map (models in ``order``) as an inline base64 PNG: dark = close."""
    d = np.asarray(d, dtype=float)[np.ix_(order, order)]
    lo, hi = float(np.min(d)), float(np.max(d))
    t = (d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)
    # light (far) -> dark blue (close)
    c0, c1 = np.array([250, 250, 250]), np.array([25, 55, 130])
    img = (c1[None, None, :] * (1 - t[..., None]) + c0[None, None, :] * t[..., None]).astype(np.uint8)
    b64 = base64.b64encode(png(img)).decode()
    return (f'<figure><img class="hm" width="{size}" height="{size}" alt="{escape(title)}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{escape(title)} (dark = close; {lo:.3g}..{hi:.3g})'
            f"</figcaption></figure>")


def dendrogram(d: np.ndarray, leaf_cats: list[str], title: str, width: int = 560, height: int = 220
               ) -> tuple[str, np.ndarray]:
    """Average-linkage dendrogram of a distance matrix as SVG; returns ``(svg, leaf order)``."""
    from scipy.cluster.hierarchy import dendrogram as scipy_dendrogram
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    d = np.asarray(d, dtype=float)
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0)
    z = linkage(squareform(np.clip(d, 0, None), checks=False), method="average")
    dn = scipy_dendrogram(z, no_plot=True)
    order = np.asarray(dn["leaves"], int)
    n = len(order)
    ymax = max(max(max(v) for v in dn["dcoord"]), 1e-12)
    pad, base = 6, height - 16
    sx = lambda x: pad + (x - 5) / max(10 * n - 10, 1) * (width - 2 * pad)  # noqa: E731 - scipy leaves sit at 5, 15, ...
    sy = lambda y: base - y / ymax * (base - pad)  # noqa: E731
    lines = []
    for xs, ys in zip(dn["icoord"], dn["dcoord"]):
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
        lines.append(f'<polyline points="{pts}" fill="none" stroke="#555" stroke-width="0.8"/>')
    col = colors(leaf_cats)
    ticks = "".join(f'<rect x="{sx(5 + 10 * i) - 1.5:.1f}" y="{base + 3}" width="3" height="9" fill="{col[leaf_cats[j]]}"/>'
                    for i, j in enumerate(order))
    svg = (f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(title)}" style="border:1px solid #ccc;background:#fff">{"".join(lines)}{ticks}</svg>'
           f"<figcaption>{escape(title)}</figcaption>{legend(col)}</figure>")
    return svg, order


def line_chart(series: dict[str, list[tuple[float, float | None]]], title: str, ylabel: str, width: int = 560,
               height: int = 280) -> str:
    """Lines of ``(x in [0, 1], y in [0, 1])`` points, e.g. a forecast curve vs fraction of training."""
    pad = 38
    col = colors(list(series))
    paths = []
    for name, pts in series.items():
        pts = sorted((float(x), float(y)) for x, y in pts if y is not None and math.isfinite(float(y)))
        if not pts:
            continue
        dpath = " ".join(f"{'M' if i == 0 else 'L'}{pad + x * (width - 2 * pad):.1f},{height - pad - y * (height - 2 * pad):.1f}"
                         for i, (x, y) in enumerate(pts))
        paths.append(f'<path d="{dpath}" fill="none" stroke="{col[name]}" stroke-width="2"><title>{escape(name)}</title></path>')
    axes = (f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>'
            f'<text x="{width / 2}" y="{height - 8}" font-size="11" text-anchor="middle">fraction of training</text>'
            f'<text x="4" y="{pad - 12}" font-size="11">{escape(ylabel)} (0..1)</text>')
    return (f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(title)}" style="border:1px solid #ccc">{axes}{"".join(paths)}</svg>'
            f"<figcaption>{escape(title)}</figcaption>{legend(col)}</figure>")


def confusion_table(conf: dict | None, label_name: str) -> str:
    if not conf:
        return ""
    counts = np.asarray(conf["counts"])
    top = counts.max() if counts.size else 1
    head = "".join(f"<th>{escape(str(c))}</th>" for c in conf["labels"])
    body = []
    for r, row in zip(conf["clusters"], counts):
        cells = "".join(f'<td style="background:rgba(78,121,167,{0.08 + 0.7 * v / max(top, 1):.2f})">{int(v)}</td>' for v in row)
        body.append(f"<tr><th class='l'>cluster {escape(str(r))}</th>{cells}</tr>")
    return (f"<table><tr><th class='l'>clusters × {escape(label_name)}</th>{head}</tr>{''.join(body)}</table>")


# -- the page ------------------------------------------------------------------------------------
SCORE_COLUMNS = [("fingerprint", "fingerprint"), ("kind", "kind"), ("output", "output"), ("n_models", "models"),
                 ("n_clusters", "basins k"), ("consensus_k", "bootstrap k"), ("stability", "stability"),
                 ("deep_ami", "deep AMI"), ("probe_auroc", "probe AUROC"), ("noise_ami", "noise AMI"),
                 ("parent_noise_ami", "parent AMI"), ("lineage_nn", "lineage 1-NN"), ("aligns_with", "aligns with"),
                 ("verdict", "verdict"), ("label_free_verdict", "label-free verdict")]
TEXT_COLS = {"fingerprint", "kind", "output", "aligns_with", "verdict", "label_free_verdict"}
INTERVALS = {"deep_ami": ("deep_ami_ci", "deep_ami_q"), "noise_ami": ("noise_ami_ci", "noise_ami_q"),
             "probe_auroc": ("probe_auroc_ci", None)}  # a score's 95% family-bootstrap interval and BH-adjusted p


def headline(result: dict[str, Any]) -> str:
    rows = result.get("scorecard", [])
    failed = [r for r in rows if r.get("error")]
    ok = [r for r in rows if not r.get("error")]
    parts = []
    if failed:
        parts.append(f"<div class='fail'><b>{len(failed)} of {len(rows)} fingerprints failed</b>: "
                     + "; ".join(f"<b>{escape(str(r['fingerprint']))}</b>: {escape(str(r.get('error')))}" for r in failed)
                     + "</div>")
    if not ok:
        parts.append("<div class='fail'><b>No fingerprint could be analysed.</b></div>")
        return "".join(parts)
    label = (result.get("settings") or {}).get("label")
    if not label or all(r.get("deep_ami") is None for r in ok):
        parts.append(label_free_headline(ok, "No ground-truth label: the verdicts below come from lineage alone. "))
        return "".join(parts)
    best = max(ok, key=lambda r: (r.get("deep_ami") if r.get("deep_ami") is not None else -1))
    by = lambda *vs: [str(r["fingerprint"]) for r in ok if r.get("verdict") in vs]  # noqa: E731
    deep, noise, both, none = by("tracks deep differences"), by("tracks initialization noise"), by("tracks both"), by("uninformative")
    txt = (f"Best at recovering the true basins (<code>{escape(str(label))}</code>): <b>{escape(str(best['fingerprint']))}</b> "
           f"with deep AMI {_fmt(best.get('deep_ami'))} ({_fmt(best.get('n_clusters'))} basins, stability "
           f"{_fmt(best.get('stability'))}). ")
    lst = lambda xs: escape(", ".join(xs)) if xs else "<b>none</b>"  # noqa: E731
    txt += (f"<br>Tracks deep differences: {lst(deep)}.<br>Tracks initialization noise: {lst(noise)}."
            f"<br>Tracks both: {lst(both)}.<br>Uninformative: {lst(none)}.")
    cls = "ok" if (deep or both) else "fail"
    if not (deep or both):
        txt = "<b>No fingerprint's basins track the deep label.</b> " + txt
    parts.append(f"<div class='{cls}'>{txt}</div>")
    return "".join(parts)


def label_free_headline(rows: list[dict[str, Any]], prefix: str = "") -> str:
    """What lineage alone says (docs/scorecard.md, "Without ground truth"): candidate deep basins
    first, then the fingerprints that track initialization noise."""
    by = lambda v: [str(r["fingerprint"]) for r in rows if r.get("label_free_verdict") == v]  # noqa: E731
    lst = lambda xs: escape(", ".join(xs)) if xs else "<b>none</b>"  # noqa: E731
    deep = by("crosses lineage") + by("groups lineages")
    txt = (f"{escape(prefix)}Candidate deep differences (basins shared across init families or splitting them, "
           f"significant after Benjamini-Hochberg): crosses lineage: {lst(by('crosses lineage'))}; groups lineages: "
           f"{lst(by('groups lineages'))}.<br>Tracks initialization noise only: {lst(by('lineage only'))}."
           f"<br>No structure: {lst(by('no structure'))}." + (f"<br>Insufficient: {lst(by('insufficient'))} "
           f"({escape(str(next(r.get('label_free_sentence') for r in rows if r.get('label_free_verdict') == 'insufficient')))})."
           if by("insufficient") else ""))
    return f"<div class='{'ok' if deep else 'fail'}'>{txt}</div>"


def scorecard_table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th class='l'>{escape(t)}</th>" if k in TEXT_COLS else f"<th>{escape(t)}</th>" for k, t in SCORE_COLUMNS)
    body = []
    for r in rows:
        cells = []
        for k, _ in SCORE_COLUMNS:
            v = r.get(k)
            if k == "verdict":
                cells.append(f"<td class='l {css_class(v)}' title='{escape(str(r.get('reason') or ''))}'>"
                             f"{escape(str(v))}</td>")
            elif k == "fingerprint":
                sup = " <span class='sub' title='trained on the label: deep scores are optimistic'>(supervised)</span>" \
                    if r.get("supervised") else ""
                cells.append(f"<td class='l'><a href='#fp-{_anchor(str(v))}'>{escape(str(v))}</a>{sup}</td>")
            elif k == "n_clusters" and r.get("k_at_cap"):
                cells.append(f"<td title='the largest k tried (k_max): more basins may fit better'>{_fmt(v)}*</td>")
            elif k == "label_free_verdict":
                cells.append(f"<td class='l {css_class(v)}' title='{escape(str(r.get('label_free_sentence') or ''))}'>"
                             f"{escape(str(v))}</td>")
            elif k in INTERVALS and v is not None:
                ci_key, q_key = INTERVALS[k]
                ci, q = r.get(ci_key), r.get(q_key) if q_key else None
                extra = (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "") + (f" q {q:.2g}" if q is not None else "")
                cells.append(f"<td>{_fmt(v)}<span class='sub'>{escape(extra)}</span></td>")
            elif k == "lineage_nn" and v is not None:
                cells.append(f"<td>{_fmt(v)} <span class='sub'>(chance {_fmt(r.get('lineage_nn_chance'))})</span></td>")
            elif k in TEXT_COLS:
                cells.append(f"<td class='l'>{_fmt(v)}</td>")
            else:
                cells.append(f"<td>{_fmt(v)}</td>")
        cls = " class='failrow'" if r.get("error") else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
        if r.get("error"):
            body.append(f"<tr class='failrow'><td class='l' colspan='{len(SCORE_COLUMNS)}'>error: {escape(str(r['error']))}</td></tr>")
    note = ("<p class='sub'>* k is the largest one tried (<code>k_max</code>) and was chosen: more basins may fit "
            "better; raise <code>--k-max</code> (each k's score is in <code>summary.json</code>'s <code>k_scores</code>).</p>"
            if any(r.get("k_at_cap") and not r.get("error") for r in rows) else "")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{note}"


def _anchor(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def fingerprint_section(r: dict[str, Any], settings: dict[str, Any], distances: np.ndarray | None) -> str:
    name = str(r["fingerprint"])
    out = [f"<h3 id='fp-{_anchor(name)}'>{escape(name)} <span class='sub'>— "
           f"<span class='{css_class(r.get('verdict'))}'>{escape(str(r.get('verdict')))}</span> "
           f"({escape(str(r.get('reason') or ''))})</span></h3>"]
    if r.get("error"):
        out.append(f"<div class='fail'>{escape(str(r['error']))}</div>")
        if r.get("traceback"):
            out.append(f"<pre>{escape(r['traceback'])}</pre>")
        return "".join(out)
    boot = r.get("bootstrap") or {}
    meta = r.get("meta") or {}
    out.append(f"<div class='sub'>{escape(str(r.get('kind')))} · {escape(str(r.get('output')))} · step "
               f"{escape(str(r.get('step')))} · {r.get('n_models')} models · method {escape(str(r.get('method')))} · "
               f"k = {r.get('k')} · bootstrap k counts {escape(json.dumps(boot.get('k_counts', {})))} · map "
               f"{escape(str(r.get('embedding_method')))}"
               + (f" · held-out AUROC of the supervised extractor {_fmt(meta.get('heldout_auroc'))}" if 'heldout_auroc' in meta else "")
               + (f" · left out (diverged/unknown): {len(r['excluded'])}" if r.get("excluded") else "") + "</div>")
    if r.get("approximations"):
        out.append("<div class='sub'>Large population, sampled steps: "
                   + "; ".join(escape(str(a)) for a in r["approximations"]) + " (docs/scorecard.md).</div>")
    ids = r.get("model_ids") or []
    xy = r.get("embedding") or []
    clusters = [str(c) for c in r.get("clusters") or []]
    figs = [scatter(xy, clusters, ids, "coloured by cluster")]
    if r.get("label_values") is not None:
        figs.append(scatter(xy, r["label_values"], ids, f"coloured by ground truth ({settings.get('label')})"))
    if r.get("lineage_values") is not None:
        figs.append(scatter(xy, r["lineage_values"], ids, f"coloured by lineage ({settings.get('lineage')})"))
    sizes = [(f"cluster {b['cluster']}" if b["cluster"] >= 0 else "noise", int(b["size"])) for b in r.get("basins", [])]
    figs.append(bars(sizes, "basin sizes"))
    out.append(f"<div class='maps'>{''.join(figs)}</div>")
    if distances is not None and len(distances) == len(ids) and len(ids) >= 3:
        cats = r.get("label_values") or clusters
        try:
            dsvg, order = dendrogram(distances, [str(c) for c in cats], "dendrogram (average linkage); leaves coloured by "
                                     + ("ground truth" if r.get("label_values") else "cluster"))
        except Exception as e:  # noqa: BLE001 - a degenerate matrix must not lose the rest of the report
            dsvg, order = f"<div class='fail'>dendrogram failed: {escape(str(e))}</div>", np.argsort(np.asarray(r['clusters']), kind="stable")
        out.append(f"<div class='maps'>{dsvg}{heatmap(distances, order, 'distance heat-map (dendrogram order)')}</div>")
    # basins table: size, exemplar, label mix
    rows = []
    for b in r.get("basins", []):
        mix = ", ".join(f"{escape(k)}: {v}" for k, v in (b.get("labels") or {}).items())
        rows.append(f"<tr><td>{b['cluster']}</td><td>{b['size']}</td><td class='l'><code>{escape(str(b['exemplar']))}</code></td>"
                    f"<td class='l'>{mix}</td><td>{_fmt(b.get('n_families'))}</td></tr>")
    out.append("<div class='maps'><div><table><tr><th>cluster</th><th>size</th><th class='l'>exemplar (medoid)</th>"
               f"<th class='l'>ground truth mix</th><th>families</th></tr>{''.join(rows)}</table></div>"
               f"<div>{confusion_table(r.get('confusion'), str(settings.get('label')))}</div></div>")
    s = r.get("scores") or {}
    al = ", ".join(f"{escape(k)}: {_fmt(v)}" for k, v in (r.get("alignment") or {}).items())
    out.append(f"<div class='sub'>AMI of the clusters with lineage columns (whole population): {al or '–'}. "
               f"Noise AMI per true basin: {', '.join(f'{escape(str(k))}: {_fmt(v)}' for k, v in (s.get('noise_ami_per_basin') or {}).items()) or '–'}. "
               f"Parent-family 1-NN: {_fmt(s.get('parent_nn'))} (chance {_fmt(s.get('parent_nn_chance'))}).</div>")
    out.append(label_free_section(r))
    return "".join(out)


def label_free_section(r: dict[str, Any]) -> str:
    """Models -> init families -> candidate basins: the label-free verdict in one sentence, its
    tests, and which families each candidate basin holds (and how many of their members)."""
    free = r.get("label_free") or {}
    if not free:
        return ""
    v = str(free.get("verdict"))
    agrees = free.get("agrees")
    head = (f"<div class='sub'><b>Without the label</b>: <span class='{css_class(v)}'>{escape(v)}</span> — "
            f"{escape(str(free.get('sentence') or ''))}"
            + ("" if agrees is None else f" ({'agrees' if agrees else 'disagrees'} with the labelled verdict.)")
            + f" Tests (p before correction): families identifiable {_fmt(free.get('p_lineage'), 3)}, family centroids in "
            f"groups {_fmt(free.get('p_groups'), 3)}, models in two camps {_fmt(free.get('p_split'), 3)} (cutting "
            f"{_fmt(free.get('split_rate'))} of the families); verdict q {_fmt(free.get('q'), 3)}.</div>")
    basins = free.get("candidate_basins") or {}
    if not basins:
        return head
    lineage = dict(zip(r.get("model_ids") or [], r.get("lineage_values") or []))
    groups: dict[int, dict[str, int]] = {}
    for m, b in basins.items():
        fam = str(lineage.get(m, "?"))
        groups.setdefault(int(b), {}).setdefault(fam, 0)
        groups[int(b)][fam] += 1
    rows = "".join(f"<tr><td>{b}</td><td>{sum(f.values())}</td><td>{len(f)}</td><td class='l'>"
                   + escape(", ".join(f"{k} ({n})" for k, n in sorted(f.items(), key=lambda kv: natural_key(kv[0]))))
                   + "</td></tr>" for b, f in sorted(groups.items()))
    return (head + "<table><tr><th>candidate basin</th><th>models</th><th>families</th><th class='l'>families (members "
            f"in this basin)</th></tr>{rows}</table>")


def render(result: dict[str, Any], provenance: dict[str, Any] | None = None,
           distances: dict[str, np.ndarray] | None = None, forecast: list[dict] | None = None,
           title: str = "Basin fingerprint report") -> str:
    """The whole report as one HTML string.

    ``result`` comes from :func:`analysis.scorecard.analyze`; ``distances`` maps a fingerprint name
    to its ``[n, n]`` matrix (rows in that fingerprint's ``model_ids`` order) for the dendrogram and
    heat-map; ``forecast`` is a list of ``{fingerprint, step, fraction, accuracy, ami}``.
    """
    if not isinstance(result, dict):  # transitional: the page still reads the JSON form
        result = result.to_dict()
    provenance = provenance or {}
    settings = result.get("settings") or {}
    th = settings.get("thresholds") or {}
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(result.get("created", time.time())))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}: {escape(str(provenance.get('task', '')))}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1><div class='sub'>zoo <code>{escape(str(provenance.get('zoo', '')))}</code> · task "
        f"<b>{escape(str(provenance.get('task', '')))}</b> · {result.get('n_models')} models · ground truth "
        f"<code>{escape(str(settings.get('label')))}</code> · lineage <code>{escape(str(settings.get('lineage')))}</code> · "
        f"method {escape(str(settings.get('method')))} · {escape(created)}</div>",
        "<h2>Verdict</h2>", headline(result),
        "<h2>Scorecard</h2>",
        f"<p class='sub'><b>deep AMI</b>: adjusted mutual information between the fingerprint's clusters and the ground truth "
        f"(≥ {_fmt(th.get('deep_ami'))} counts as deep). <b>probe AUROC</b>: cross-validated linear probe on the fingerprint "
        f"(binary labels: ≥ {_fmt(th.get('probe_auroc'))} also counts as deep). <b>noise AMI</b>: AMI between clusters and "
        f"lineage families inside each true basin, size-weighted (≥ {_fmt(th.get('noise_ami'))} counts as noise); "
        f"<b>parent AMI</b>: the same for spawn / fine-tune parent families. <b>lineage 1-NN</b>: how often a model's nearest "
        f"neighbour inside its true basin is a relative (vs chance). <b>stability</b>: mean ARI between bootstrap "
        f"clusterings. Formulas: docs/scorecard.md.</p>",
        scorecard_table(result.get("scorecard", [])),
    ]
    if forecast:
        series: dict[str, list] = {}
        for f in forecast:
            series.setdefault(str(f.get("fingerprint")), []).append((f.get("fraction", 0.0), f.get("accuracy")))
        parts.append("<h2>Forecast</h2><p class='sub'>How well fingerprints at an early checkpoint predict each model's "
                     "final basin (cross-validated accuracy).</p>")
        parts.append(line_chart(series, "forecast accuracy vs fraction of training", "accuracy"))
    parts.append("<h2>Fingerprints</h2>")
    for r in result.get("fingerprints", []):
        d = (distances or {}).get(str(r["fingerprint"]))  # rows in r["model_ids"] order
        parts.append(fingerprint_section(r, settings, d))
    prov = json.dumps({"provenance": provenance, "analysis": settings,
                       "fingerprints": [r.get("meta") for r in result.get("fingerprints", [])]}, indent=2, default=str)
    parts.append(f"<h2>Config and provenance</h2><pre>{escape(prov)}</pre></body></html>")
    return "\n".join(parts)
