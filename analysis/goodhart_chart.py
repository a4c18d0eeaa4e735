"""The report's figure of ``fingerprint goodhart``: selection and optimization pressure on one plot.

Both pressures end in a set of models the detector judges; the first panel puts each outcome at
(share the detector calls B, share truly B). On the diagonal the detector tells the truth; below
it, models that only look like B. Selection points are labelled by the fraction kept, optimization
points by the penalty weight lambda; bars are the 95% family-bootstrap intervals of the true share.
The other two panels show the same shares against each pressure's own strength (the kept fraction,
lambda): solid the share truly B, dashed the share the detector calls B, the gap between them fooled.
Drawn with the helpers of :mod:`analysis.plots` (same style, SVG inline, PNG and PDF files).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.ticker

from analysis.plots import Figure, _finish, _new, _styled

SELECT_COLOR, OPTIMIZE_COLOR = "#0072B2", "#D55E00"  # Okabe-Ito, as the label palette


@_styled
def goodhart_chart(name: str, result: dict, caption: str, formats: Sequence[str] = ()) -> Figure:
    """``result``: the ``goodhart`` JSON (``selection``: ``[{keep, detector_says, purity, purity_ci}]``,
    ``optimization``: ``[{lambda, detector_says, truly, truly_ci}]``, ``basin``)."""
    fig = _new(8.6, 2.9)
    ax, sel_ax, opt_ax = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.25, 1, 1]})
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="#888", label="detector tells the truth")
    curves = (
        ("selection (kept fraction)", SELECT_COLOR, "o", result.get("selection") or [], "purity", "purity_ci",
         lambda p: f"{100 * p['keep']:g}%"),
        ("optimization (lambda)", OPTIMIZE_COLOR, "s", result.get("optimization") or [], "truly", "truly_ci",
         lambda p: f"{p['lambda']:g}"),
    )
    for label, color, marker, pts, key, ci_key, text in curves:
        pts = [p for p in pts if p.get("detector_says") is not None and p.get(key) is not None]
        if not pts:
            continue
        xs, ys = [p["detector_says"] for p in pts], [p[key] for p in pts]
        lo = [y - p[ci_key][0] if p.get(ci_key) else 0.0 for y, p in zip(ys, pts)]
        hi = [p[ci_key][1] - y if p.get(ci_key) else 0.0 for y, p in zip(ys, pts)]
        ax.errorbar(xs, ys, yerr=[lo, hi], color=color, marker=marker, markersize=4, lw=1.1, elinewidth=0.6,
                    capsize=1.5, label=label)
        for x, y, p in zip(xs, ys, pts):
            ax.annotate(text(p), (x, y), textcoords="offset points", xytext=(4, -8 if marker == "s" else 4),
                        fontsize=5.5, color=color)
    basin = str(result.get("basin", "B"))
    ax.set_xlim(-0.03, 1.08)
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel(f"share the detector calls '{basin}'")
    ax.set_ylabel(f"share truly '{basin}' (task diagnostics)")
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(loc="upper left", frameon=False)
    keeps = _strength(sel_ax, result.get("selection") or [], "keep", "purity", SELECT_COLOR, "o", "kept fraction (log scale)")
    sel_ax.set_xscale("log")
    sel_ax.invert_xaxis()
    lams = _strength(opt_ax, result.get("optimization") or [], "lambda", "truly", OPTIMIZE_COLOR, "s",
                     "penalty weight lambda (symlog scale)")
    positive = [v for v in lams if v > 0]
    if positive:
        opt_ax.set_xscale("symlog", linthresh=min(positive), linscale=0.5)
        opt_ax.set_xlim(-0.3 * min(positive), 1.5 * max(positive))
    # ticks at the measured strengths, as plain text (mathtext is off: no 10^k labels)
    sel_ax.set_xticks(keeps, [f"{100 * v:g}%" for v in keeps], rotation=90)
    opt_ax.set_xticks(lams, [f"{v:g}" for v in lams], rotation=90)
    for a in (sel_ax, opt_ax):
        a.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    sel_ax.set_ylabel("share of the models")
    return _finish(fig, name, caption, formats)


def _strength(ax, pts: list[dict], x_key: str, true_key: str, color: str, marker: str, xlabel: str) -> list[float]:
    """Truly B (solid) and called B (dashed) against a pressure's strength; returns the strengths drawn."""
    pts = sorted((p for p in pts if p.get(true_key) is not None and p.get("detector_says") is not None),
                 key=lambda p: p[x_key])
    if pts:
        xs = [p[x_key] for p in pts]
        ax.plot(xs, [p[true_key] for p in pts], color=color, marker=marker, markersize=3.5, lw=1.2, label="truly B")
        ax.plot(xs, [p["detector_says"] for p in pts], color=color, ls="--", marker=marker, markersize=2.5, lw=0.9,
                mfc="white", label="detector says B")
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(loc="lower left", frameon=False)
    return [p[x_key] for p in pts]
