"""The report's pictures: inline-SVG scatter plots, bars, dendrograms and line charts, and PNG
heat-maps (zlib only, no imaging library).

Each function returns a :class:`markupsafe.Markup` fragment for the report's Jinja2 templates; every
string from data (model ids, labels, names, titles) inside it goes through :func:`markupsafe.escape`.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Callable

import numpy as np
from markupsafe import Markup, escape

from analysis.metrics import natural_key

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79"]
MAX_POINTS = 5000  # a scatter plot draws at most this many models (a fixed random sample beyond)



def colors(cats: list[str]) -> dict[str, str]:
    """Category -> colour: a fixed palette, then golden-angle hues for many categories."""
    uniq = sorted(set(cats), key=natural_key)
    out = {}
    for i, c in enumerate(uniq):
        out[c] = "#999999" if c in ("-1", "None", "") else (PALETTE[i] if i < len(PALETTE) else f"hsl({(i * 137.508) % 360:.0f},60%,50%)")
    return out


def legend(col: dict[str, str], limit: int = 14) -> Markup:
    items = list(col.items())
    spans = "".join(f'<span><i class="sw" style="background:{v}"></i>{escape(k)}</span>' for k, v in items[:limit])
    more = f"<span>… and {len(items) - limit} more</span>" if len(items) > limit else ""
    return Markup(f'<div class="legend">{spans}{more}</div>')


# -- plots ---------------------------------------------------------------------------------------
def shown_points(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Indices of the models a scatter plot draws: all of them, or a fixed random ``limit`` (sorted),
    the same for every plot of a report, so that the three maps of a fingerprint show the same models."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))


def scatter(xy: list[list[float]], cats: list[str], ids: list[str], title: str, size: int = 290,
            limit: int = MAX_POINTS) -> Markup:
    """An inline-SVG scatter plot coloured by category; each point's tooltip names the model.

    More than ``limit`` models: a fixed random sample of ``limit`` is drawn (the caption says so),
    since a page with 10^5 SVG circles per map is too heavy to open. The axes span every model.
    """
    if not xy:
        return Markup(f"<figure><div class='sub'>(no models)</div><figcaption>{escape(title)}</figcaption></figure>")
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
    return Markup(f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
            f'aria-label="{escape(title)}" style="border:1px solid #ccc;background:#fff">{"".join(pts)}</svg>'
            f"<figcaption>{escape(title)}</figcaption>{legend(col)}</figure>")


def bars(sizes: list[tuple[str, int]], title: str, width: int = 290) -> Markup:
    """Horizontal bars (basin sizes)."""
    if not sizes:
        return Markup("")
    col = colors([k for k, _ in sizes])
    h = 18
    top = max(v for _, v in sizes) or 1
    rows = []
    for i, (k, v) in enumerate(sizes):
        w = (width - 110) * v / top
        rows.append(f'<text x="0" y="{i * h + 13}" font-size="11">{escape(k)}</text>'
                    f'<rect x="70" y="{i * h + 3}" width="{w:.1f}" height="{h - 6}" fill="{col[k]}"/>'
                    f'<text x="{74 + w:.1f}" y="{i * h + 13}" font-size="11">{v}</text>')
    return Markup(f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{len(sizes) * h + 4}" role="img" '
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


def heatmap(d: np.ndarray, order: np.ndarray, title: str, size: int = 290) -> Markup:
    """A distance heat-map (models in ``order``) as an inline base64 PNG: dark = close."""
    d = np.asarray(d, dtype=float)[np.ix_(order, order)]
    lo, hi = float(np.min(d)), float(np.max(d))
    t = (d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)
    # light (far) -> dark blue (close)
    c0, c1 = np.array([250, 250, 250]), np.array([25, 55, 130])
    img = (c1[None, None, :] * (1 - t[..., None]) + c0[None, None, :] * t[..., None]).astype(np.uint8)
    b64 = base64.b64encode(png(img)).decode()
    return Markup(f'<figure><img class="hm" width="{size}" height="{size}" alt="{escape(title)}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{escape(title)} (dark = close; {lo:.3g}..{hi:.3g})'
            f"</figcaption></figure>")


def _tree(dn: dict, width: int, base: float, pad: int = 6) -> tuple[list[str], Callable[[float], float]]:
    """The links of a scipy dendrogram (``no_plot=True``) as SVG polylines above ``base``, and the x
    position of a scipy leaf coordinate (leaves sit at 5, 15, 25, ...)."""
    n = len(dn["leaves"])
    ymax = max(max((max(v) for v in dn["dcoord"]), default=0.0), 1e-12)
    sx = lambda x: pad + (x - 5) / max(10 * n - 10, 1) * (width - 2 * pad)  # noqa: E731
    sy = lambda y: base - y / ymax * (base - pad)  # noqa: E731
    lines = []
    for xs, ys in zip(dn["icoord"], dn["dcoord"]):
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
        lines.append(f'<polyline points="{pts}" fill="none" stroke="#555" stroke-width="0.8"/>')
    return lines, sx


def _figure(body: str, width: int, height: float, title: str, col: dict[str, str]) -> Markup:
    return Markup(f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" role="img" '
                  f'aria-label="{escape(title)}" style="border:1px solid #ccc;background:#fff">{body}</svg>'
                  f"<figcaption>{escape(title)}</figcaption>{legend(col)}</figure>")


def dendrogram(d: np.ndarray, leaf_cats: list[str], title: str, width: int = 560, height: int = 220
               ) -> tuple[Markup, np.ndarray]:
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
    base = height - 16
    lines, sx = _tree(dn, width, base)
    col = colors(leaf_cats)
    ticks = "".join(f'<rect x="{sx(5 + 10 * i) - 1.5:.1f}" y="{base + 3}" width="3" height="9" fill="{col[leaf_cats[j]]}"/>'
                    for i, j in enumerate(order))
    return _figure("".join(lines) + ticks, width, height, title, col), order


def family_dendrogram(z: list[list[float]], families: list[str], sizes: list[int],
                      members: dict[str, dict[str, int]], title: str, height: int = 230,
                      max_labels: int = 60) -> Markup:
    """Models -> init families -> candidate basins: the dendrogram ``z`` (scipy linkage) whose
    leaves are the ``families`` (``sizes`` models each). Under each leaf a bar of its members,
    stacked by candidate basin (``members[family] = {basin: count}``; grey when a family has none),
    and the family's name and size (names only up to ``max_labels`` families; every leaf has a
    tooltip). Family names are user data: escaped."""
    from scipy.cluster.hierarchy import dendrogram as scipy_dendrogram

    dn = scipy_dendrogram(np.asarray(z, dtype=float), no_plot=True)
    order = [int(j) for j in dn["leaves"]]
    n = len(order)
    width = min(1100, max(420, 18 * n + 20))
    named = n <= max_labels
    bar_h, label_h = 28, (70 if named else 6)
    base = height - bar_h - label_h
    lines, sx = _tree(dn, width, base)
    col = colors([str(b) for m in members.values() for b in m] or ["-1"])
    step = (width - 12) / max(n, 1)
    bw = max(2.0, min(12.0, 0.7 * step))
    parts = []
    for i, j in enumerate(order):
        fam, size = families[j], int(sizes[j])
        x = sx(5 + 10 * i)
        shares = members.get(fam) or {"-1": size}
        tip = f"{fam}: {size} models" + ("" if "-1" in shares and len(shares) == 1 else
                                         "; " + ", ".join(f"candidate basin {b}: {c}" for b, c in shares.items()))
        y = base + 3
        segs = []
        for b, c in sorted(shares.items(), key=lambda kv: natural_key(kv[0])):
            h = bar_h * c / max(size, 1)
            segs.append(f'<rect x="{x - bw / 2:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{h:.1f}" fill="{col.get(str(b), "#999999")}"/>')
            y += h
        parts.append(f'<g><title>{escape(tip)}</title>{"".join(segs)}</g>')
        if named:
            ty = base + bar_h + 6
            short = fam if len(fam) <= 12 else fam[:11] + "…"  # the whole name is in the tooltip
            parts.append(f'<text x="{x - 3:.1f}" y="{ty:.1f}" font-size="9" transform="rotate(90 {x - 3:.1f} {ty:.1f})">'
                         f'{escape(short)} ({size})</text>')
    col = {(f"candidate basin {k}" if k != "-1" else "no candidate basin"): v for k, v in col.items()}
    return _figure("".join(lines) + "".join(parts), width, height, title, col)


def line_chart(series: dict[str, list[tuple[float, float | None]]], title: str, ylabel: str, width: int = 560,
               height: int = 280) -> Markup:
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
    return Markup(f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(title)}" style="border:1px solid #ccc">{axes}{"".join(paths)}</svg>'
            f"<figcaption>{escape(title)}</figcaption>{legend(col)}</figure>")
