"""Benchmark: the scorecard's cost, with and without its family-level statistics.

Builds synthetic fingerprints (``--fps`` of them, ``--dim`` features) for ``--models`` models in
init families of ``--family-size``, and times ``analysis.scorecard.analyze`` side by side in one
run: with ``calibrate = false`` (what the report computed before issue 20: clusters, bootstrap,
maps, scores) and with the family bootstrap intervals, family permutation p-values and label-free
tests (the default). Then it times the report page made from the calibrated result
(:func:`analysis.report.render`, every figure drawn as inline SVG), and the page with every figure
also as PNG and PDF (:func:`analysis.report.page`, what ``report`` writes). Prints seconds and the
ratio; ``--json`` prints them as one object.

    python scripts/bench_report.py [--models 1000] [--fps 10] [--embedding pca] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from analysis.report import page, render
from analysis.results import AnalysisResult
from analysis.scorecard import AnalysisOptions, FingerprintInput, analyze


def population(n: int, n_fps: int, dim: int, family_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    fam = np.arange(n) // family_size
    deep = rng.integers(0, 2, n)
    ids = [f"m{i}" for i in range(n)]
    fps = []
    for j in range(n_fps):
        fam_eff = rng.standard_normal((fam.max() + 1, dim))[fam] * rng.uniform(0, 2)
        deep_eff = np.outer(deep, rng.standard_normal(dim)) * rng.uniform(0, 3)
        fps.append(FingerprintInput(f"fp{j}", fam_eff + deep_eff + rng.standard_normal((n, dim)), ids))
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": fam, "deep_label": np.asarray(["a", "b"], dtype=object)[deep]}
    return fps, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--family-size", type=int, default=4)
    ap.add_argument("--embedding", default="pca", choices=["pca", "umap"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    fps, table = population(args.models, args.fps, args.dim, args.family_size)
    times = {}
    for name, calibrate in (("plain", False), ("calibrated", True)):
        opts = AnalysisOptions(embedding=args.embedding, calibrate=calibrate)
        t = time.perf_counter()
        res = analyze(fps, table, opts).to_dict()
        times[name] = time.perf_counter() - t
        assert not any(r["error"] for r in res["scorecard"]), [r["error"] for r in res["scorecard"]]
    t = time.perf_counter()
    html = render(AnalysisResult.from_dict(res))
    times["render"] = time.perf_counter() - t
    t = time.perf_counter()
    files = page(AnalysisResult.from_dict(res)).figures  # every figure also as PNG and PDF (figures/)
    times["files"] = time.perf_counter() - t
    out = {"models": args.models, "fingerprints": args.fps, "seconds_plain": round(times["plain"], 2),
           "seconds_calibrated": round(times["calibrated"], 2), "ratio": round(times["calibrated"] / times["plain"], 2),
           "seconds_render": round(times["render"], 2), "html_mb": round(len(html.encode()) / 1e6, 2),
           "seconds_render_with_files": round(times["files"], 2), "figures": len(files)}
    print(json.dumps(out) if args.json else
          f"{args.models} models x {args.fps} fingerprints: plain {out['seconds_plain']} s, with family statistics "
          f"{out['seconds_calibrated']} s, ratio {out['ratio']}; report page {out['seconds_render']} s "
          f"({out['html_mb']} MB), with {out['figures']} figures also as PNG and PDF {out['seconds_render_with_files']} s")


if __name__ == "__main__":
    main()
