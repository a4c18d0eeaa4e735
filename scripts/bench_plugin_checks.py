"""Benchmark: the checks extraction runs on plugin extractors (docs/extractors.md, "Plugins must be
deterministic" and "Rows must not depend on the other models"): how far apart two runs of a
*deterministic* extractor land (the float noise the tolerance must pass), how far a model's row
moves when the extractor runs on a subset of the models (zero for an extractor
whose rows are its own model's), and what the checks cost next to the extraction itself.

For every unsupervised built-in extractor, run as if it were a plugin (its spec with a plugin source:
rows shuffled, parameters copied, exactly the path a plugin takes), and for each extractor of the
``--plugin`` modules: the extractor on the zoo's first 3 models twice, at 1 and at ``--threads``
torch threads; the largest ``|a - b|`` relative to the largest ``|value|``; the same for the run on
2 of them (``subset_rows``) against their rows of the 3-model run (for every extractor, also those the check
leaves out: ``streaming=False`` ones show what it would see); then the wall time of
:func:`fingerprint.plugin_checks.determinism_warning` (the two runs and the load) and of the
row-independence run (the one more call on 2 models; median of ``--repeat``), beside the time of the
extraction of the whole zoo (``force=True``, the checks included: built-ins run as plugins are
checked). Works on a copy of the zoo (cache entries are written).

    python scripts/bench_plugin_checks.py ZOO [--arch module:factory] [--plugin module ...] [--threads 2] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fingerprint.batch import ModelBatch
from fingerprint.extraction import active_models, extract
from fingerprint.pipeline import allow_models
from fingerprint.plugin_checks import (
    DETERMINISM_MODELS,
    _row_dependence,
    determinism_warning,
    row_checked,
    subset_rows,
)
from fingerprint.registry import list_extractors, register
from training.core.store import Zoo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--arch", default=None, help="module:factory of an imported zoo's architecture")
    ap.add_argument("--plugin", action="append", default=[], help="plugin module (on sys.path) to measure too")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5, help="runs of the row check to take the median time of")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    sys.path.insert(0, os.getcwd())
    for m in a.plugin:
        importlib.import_module(m)
    tmp = Path(tempfile.mkdtemp(prefix="bench-plugin-checks-"))
    try:
        dst = tmp / "zoo"
        shutil.copytree(a.zoo, dst)
        zoo = allow_models(Zoo.open(dst), False, a.arch)
        rows = run(zoo, a.threads, a.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"load average {os.getloadavg()[0]:.1f}; zoo {a.zoo}; {DETERMINISM_MODELS} models; torch threads 1 / {a.threads}")
    print(f"{'extractor':28s} {'source':8s} {'rel diff 1 thr':>14s} {'rel diff N thr':>14s} {'row diff':>9s} {'check s':>8s} "
          f"{'row s':>8s} {'extract s':>9s}  warning  (extract s: the whole extraction, its checks included; row: "
          "2 of the 3 models against the 3-model run, () where the check leaves the extractor out)")
    for r in rows:
        row = fmt(r["row_diff"], 9 if r["row_checked"] else 7)
        print(f"{r['extractor']:28s} {r['source']:8s} {fmt(r['rel_diff_1'])} {fmt(r['rel_diff_n'])} "
              f"{row if r['row_checked'] else '(' + row + ')'} {fmt(r['check_s'], 8)} {fmt(r['row_s'], 8)} {fmt(r['extract_s'], 9)}  "
              f"{'; '.join(_kind(w) for w in r['warnings']) or ('skipped' if r['skipped'] else 'no')}")


def _kind(warning: str) -> str:
    return "not deterministic" if "not deterministic" in warning else "rows depend on the other models"


def fmt(v, w: int = 14) -> str:
    return f"{'–':>{w}s}" if v is None else f"{v:>{w}.3g}"


def row_diff(a: np.ndarray, c: np.ndarray) -> float | None:
    """Largest |difference| of the subset run ``c`` from its rows ``a`` of the 3-model run, relative
    to the largest |value|; ``inf`` for another shape."""
    if a.shape != c.shape:
        return float("inf")
    return float(np.abs(a.astype(np.float64) - c).max()) / max(float(np.abs(a).max()), float(np.abs(c).max()), 1e-30)


def run(zoo: Zoo, threads: int, repeat: int) -> list[dict]:
    ids = active_models(zoo)
    sub = ids[:DETERMINISM_MODELS]
    mb = ModelBatch.from_zoo(zoo, sub)
    rows = []
    for name, spec in list_extractors().items():
        if spec.supervised:
            continue
        builtin = spec.source == "builtin"
        as_plugin = dataclasses.replace(spec, source="plugin (bench)", name=f"bench-{name}") if builtin else spec
        diffs = {}
        for n_thr in (1, threads):
            torch.set_num_threads(n_thr)
            try:
                x, _ = as_plugin.compute(mb, dict(spec.params))
                y, _ = as_plugin.compute(mb, dict(spec.params))
                scale = max(float(np.abs(x).max()), 1e-30)
                diffs[n_thr] = float(np.abs(x.astype(np.float64) - y).max()) / scale
            except Exception:  # noqa: BLE001 - needs more models, or data this zoo lacks
                diffs[n_thr] = None
        torch.set_num_threads(1)
        if builtin:
            register(as_plugin)  # extracted under its own name, as a plugin
        t0 = time.perf_counter()
        determinism_warning(zoo, as_plugin, dict(spec.params), ids, None, "cpu")
        check_s = time.perf_counter() - t0
        rdiff = row_s = None
        if len(sub) == DETERMINISM_MODELS and diffs[1] is not None:
            try:
                a, _ = as_plugin.compute(mb, dict(spec.params))
                rows_ = subset_rows(sub)
                c, _ = as_plugin.compute(mb.subset(rows_), dict(spec.params))
                rdiff = row_diff(a[rows_], c)
                times = []
                for _ in range(repeat):  # what extraction adds: the one call on 2 models (and the comparison)
                    t0 = time.perf_counter()
                    _row_dependence(as_plugin, dict(spec.params), mb, a)
                    times.append(time.perf_counter() - t0)
                row_s = float(np.median(times))
            except Exception:  # noqa: BLE001 - cannot run on 2 models
                pass
        t0 = time.perf_counter()
        (res,) = extract(zoo, [as_plugin.name], force=True)
        extract_s = time.perf_counter() - t0 if res.error is None else None
        rows.append({"extractor": name, "source": "builtin" if builtin else "plugin", "rel_diff_1": diffs[1],
                     "rel_diff_n": diffs[threads], "row_diff": rdiff, "row_checked": row_checked(as_plugin),
                     "check_s": check_s, "row_s": row_s, "extract_s": extract_s,
                     "warnings": list((res.meta or {}).get("warnings") or []), "skipped": diffs[1] is None, "error": res.error})
    return rows


if __name__ == "__main__":
    main()
