"""Benchmark: the determinism check extraction runs on plugin extractors (docs/extractors.md, "Plugins
must be deterministic"): how far apart two runs of a *deterministic* extractor land (the float noise
the tolerance must pass), and what the check costs next to the extraction itself.

For every unsupervised built-in extractor, run as if it were a plugin (its spec with a plugin source:
rows shuffled, parameters copied, exactly the path a plugin takes), and for each extractor of the
``--plugin`` modules: the extractor on the zoo's first 3 models twice, at 1 and at ``--threads``
torch threads; the largest ``|a - b|`` relative to the largest ``|value|``; then the wall time of
:func:`fingerprint.extraction.determinism_warning` (what extraction adds) beside the time of the
extraction of the whole zoo (``force=True``, the check included: built-ins run as plugins are checked). Works on a copy of the zoo (cache entries are written).

    python scripts/bench_plugin_checks.py ZOO [--arch module:factory] [--plugin module ...] [--threads 2] [--json]
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
from fingerprint.extraction import (
    DETERMINISM_MODELS,
    active_models,
    determinism_warning,
    extract,
)
from fingerprint.pipeline import allow_models
from fingerprint.registry import list_extractors, register
from training.core.store import Zoo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--arch", default=None, help="module:factory of an imported zoo's architecture")
    ap.add_argument("--plugin", action="append", default=[], help="plugin module (on sys.path) to measure too")
    ap.add_argument("--threads", type=int, default=2)
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
        rows = run(zoo, a.threads)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"load average {os.getloadavg()[0]:.1f}; zoo {a.zoo}; {DETERMINISM_MODELS} models; torch threads 1 / {a.threads}")
    print(f"{'extractor':28s} {'source':8s} {'rel diff 1 thr':>14s} {'rel diff N thr':>14s} {'check s':>8s} {'extract s':>9s}  warning  (extract s: the whole extraction, its check included)")
    for r in rows:
        print(f"{r['extractor']:28s} {r['source']:8s} {fmt(r['rel_diff_1'])} {fmt(r['rel_diff_n'])} "
              f"{fmt(r['check_s'], 8)} {fmt(r['extract_s'], 9)}  {'yes' if r['warning'] else ('skipped' if r['skipped'] else 'no')}")


def fmt(v, w: int = 14) -> str:
    return f"{'–':>{w}s}" if v is None else f"{v:>{w}.3g}"


def run(zoo: Zoo, threads: int) -> list[dict]:
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
        warning = determinism_warning(zoo, as_plugin, dict(spec.params), ids, None, "cpu")
        check_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        (res,) = extract(zoo, [as_plugin.name], force=True)
        extract_s = time.perf_counter() - t0 if res.error is None else None
        rows.append({"extractor": name, "source": "builtin" if builtin else "plugin", "rel_diff_1": diffs[1],
                     "rel_diff_n": diffs[threads], "check_s": check_s, "extract_s": extract_s,
                     "warning": warning, "skipped": diffs[1] is None, "error": res.error})
    return rows


if __name__ == "__main__":
    main()
