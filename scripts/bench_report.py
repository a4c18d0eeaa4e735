"""Benchmark: ``fingerprint report``'s analysis and page on synthetic fingerprints (issue 26 item 2).

Builds synthetic feature fingerprints (``--fps`` of them, ``--dim`` features) for populations of
``--sizes`` models in init families of ``--family-size`` with a two-valued deep label, and times
what ``fingerprint report`` does with them: :func:`analysis.scorecard.analyze` at the default
options (UMAP maps, bootstrap, family statistics) and :func:`analysis.report.page` (the HTML and
every figure also as PNG and PDF). A small run in another process warms the machine first
(numba's compiled UMAP in its on-disk cache); this process then starts cold, as ``fingerprint
report`` does, and times each size in turn. Prints seconds per size; ``--json`` prints ``{"seconds_100": ..., "seconds_1000": ...}`` (one key per size) and the
analysis / page split.

``--plain`` keeps the older comparison instead: the analysis with ``calibrate = false`` and with the
family statistics side by side, and the page with and without figure files, at ``--sizes[0]``
models and ``--embedding`` maps.

    python scripts/bench_report.py [--sizes 100 1000] [--fps 10] [--json]
    python scripts/bench_report.py --plain [--sizes 1000] [--embedding pca]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

import numpy as np

from analysis.report import FORMATS, SectionDrawer, page, render
from analysis.results import AnalysisResult

# analysis.scorecard (scikit-learn, scipy.stats: ~1.3 s of CPU) is imported inside the functions: the
# drawing process runs this module's top-level imports again at its start (multiprocessing's fix-up of
# the main module), and `fingerprint report`'s main module, the CLI, imports next to nothing there.


def population(n: int, n_fps: int, dim: int, family_size: int, seed: int = 0, columns: int = 0, null: bool = False):
    """``n_fps`` fingerprints ``[n, dim]`` mixing a family effect, a deep effect (none with ``null``) and noise,
    and the table; ``columns`` more model columns (an import's metadata, which the candidate basins are
    compared with: ``meta0`` following the deep label, as an epochs column might, then numeric and
    3-valued columns at random)."""
    # not at the top: see the imports
    from analysis.scorecard import FingerprintInput

    rng = np.random.default_rng(seed)
    fam = np.arange(n) // family_size
    deep = rng.integers(0, 2, n)
    ids = [f"m{i}" for i in range(n)]
    fps = []
    for j in range(n_fps):
        fam_eff = rng.standard_normal((fam.max() + 1, dim))[fam] * rng.uniform(0, 2)
        deep_eff = np.outer(deep, rng.standard_normal(dim)) * rng.uniform(0, 3) * (not null)
        fps.append(FingerprintInput(f"fp{j}", fam_eff + deep_eff + rng.standard_normal((n, dim)), ids))
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": fam, "deep_label": np.asarray(["a", "b"], dtype=object)[deep]}
    for c in range(columns):
        table[f"meta{c}"] = (np.where(deep == 1, 40, 10) if c == 0 else rng.uniform(0, 1, n) if c % 2 else
                             np.asarray(rng.choice(["x", "y", "z"], n), dtype=object))
    return fps, table


def report_seconds(n: int, args: argparse.Namespace) -> dict[str, float]:
    """Seconds of the analysis and of the page (HTML + PNG + PDF) for ``n`` models. As ``fingerprint
    report`` does it: the fingerprints' sections drawn in a second process while the analysis runs
    (``SectionDrawer``; "page" is then what is left after the analysis), or with ``--serial`` one
    after the other."""
    # not at the top: see the imports
    from analysis.scorecard import AnalysisOptions, analyze

    fps, table = population(n, args.fps, args.dim, args.family_size, args.seed, args.columns, args.null)
    opts = AnalysisOptions(embedding=args.embedding)
    c = cpu()
    t = time.perf_counter()
    with contextlib.nullcontext() if args.serial else SectionDrawer(n * args.fps, formats=FORMATS) as drawer:
        res = analyze(fps, table, opts, on_result=drawer)
        t_analysis = time.perf_counter() - t
        c_analysis = cpu() - c
        assert not any(r.error for r in res.fingerprints), [r.error for r in res.fingerprints]
        t = time.perf_counter()
        pg = page(res, drawn=drawer.views(res) if drawer else None)
        t_page = time.perf_counter() - t
        c_worker = drawer.worker_cpu() if drawer else 0.0  # the drawing process (its start-up included)
        overlapped = bool(drawer and drawer.active)
    # the fingerprints whose label-free tests were drawn again with more replicates (docs/scorecard.md, "Null replicates")
    redrawn = sum((r.label_free or {}).get("n_null") not in (None, opts.n_perm) for r in res.fingerprints)
    return {"analysis": t_analysis, "page": t_page, "redrawn": redrawn, "figures": len(pg.figures), "cpu": cpu() - c, "cpu_analysis": c_analysis,
            "cpu_worker": c_worker, "overlapped": overlapped}


def cpu() -> float:
    """CPU seconds of this process and its finished children (a shared host's load does not inflate them)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def plain(args: argparse.Namespace) -> dict:
    """The older side-by-side: analysis without and with the family statistics, page without and with files."""
    # not at the top: see the imports
    from analysis.scorecard import AnalysisOptions, analyze

    n = args.sizes[0]
    fps, table = population(n, args.fps, args.dim, args.family_size)
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
    return {"models": n, "fingerprints": args.fps, "seconds_plain": round(times["plain"], 2),
            "seconds_calibrated": round(times["calibrated"], 2), "ratio": round(times["calibrated"] / times["plain"], 2),
            "seconds_render": round(times["render"], 2), "html_mb": round(len(html.encode()) / 1e6, 2),
            "seconds_render_with_files": round(times["files"], 2), "figures": len(files)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="population sizes (models)")
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--family-size", type=int, default=4)
    ap.add_argument("--embedding", default="umap", choices=["pca", "umap"])
    ap.add_argument("--columns", type=int, default=0, help="metadata columns the candidate basins are compared with")
    ap.add_argument("--no-warmup", action="store_true", help="time the first size cold (numba compiling UMAP)")
    ap.add_argument("--plain", action="store_true", help="the older plain vs calibrated analysis comparison")
    ap.add_argument("--serial", action="store_true", help="draw the page after the analysis, not meanwhile")
    ap.add_argument("--null", action="store_true", help="no deep effect: the fingerprints whose label-free tests are "
                    "near their threshold and drawn again with more replicates are more common")
    ap.add_argument("--seed", type=int, default=0, help="the synthetic population's seed")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import analysis.scorecard  # noqa: F401 - before any timing (see the imports)

    if args.plain:
        out = plain(args)
        print(json.dumps(out) if args.json else
              f"{out['models']} models x {args.fps} fingerprints: plain {out['seconds_plain']} s, with family statistics "
              f"{out['seconds_calibrated']} s, ratio {out['ratio']}; report page {out['seconds_render']} s "
              f"({out['html_mb']} MB), with {out['figures']} figures also as PNG and PDF {out['seconds_render_with_files']} s")
        return
    if not args.no_warmup:  # a warm machine: numba's compiled UMAP in its on-disk cache, files in the page cache
        subprocess.run([sys.executable, __file__, "--sizes", "30", "--fps", "1", "--no-warmup", "--json"], check=True,
                       capture_output=True)
    out: dict = {"fingerprints": args.fps, "embedding": args.embedding, "columns": args.columns, "null": args.null,
                 "seed": args.seed}
    for n in args.sizes:
        s = report_seconds(n, args)
        out[f"seconds_{n}"] = round(s["analysis"] + s["page"], 2)
        out[f"seconds_{n}_analysis"] = round(s["analysis"], 2)
        out[f"seconds_{n}_page"] = round(s["page"], 2)
        out[f"figures_{n}"] = s["figures"]
        out[f"redrawn_{n}"] = s["redrawn"]
        out[f"cpu_seconds_{n}"] = round(s["cpu"], 2)  # a pool's workers (and the drawer) are the forkserver's children: not counted
        out[f"cpu_seconds_{n}_analysis"] = round(s["cpu_analysis"], 2)
        out[f"cpu_seconds_{n}_drawing_process"] = round(s["cpu_worker"], 2)
        out[f"overlapped_page_{n}"] = s["overlapped"]  # a second process drew
    out["load_average"] = os.getloadavg()[0]
    print(json.dumps(out) if args.json else "\n".join(
        f"{n} models x {args.fps} fingerprints: {out[f'seconds_{n}']} s (analysis {out[f'seconds_{n}_analysis']} s, "
        f"page with {out[f'figures_{n}']} figures as SVG, PNG and PDF {out[f'seconds_{n}_page']} s; "
        f"{out[f'redrawn_{n}']} fingerprints' label-free tests drawn again)" for n in args.sizes))


if __name__ == "__main__":
    main()
