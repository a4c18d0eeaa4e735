"""Benchmark: fingerprint and cluster a population whose weights do not fit the memory budget.

Builds a zoo of ``--n-models`` MLPs (default 100,000) with about 20k parameters each (width 136,
depth 2, on ``xor-cues``: 20,130 float32 parameters, 80.5 kB per model, about 8 GB at 100,000)
through a real sweep: ``init = n/2`` seeds x ``data = 2`` orders (families of two, so the lineage
scores have something to find), one SGD step with a tiny learning rate, one checkpoint at the end,
``--models-per-batch`` models per shard. The sweep writes shard by shard, so the population is
never in memory.

Then a fresh subprocess does what ``fingerprint extract`` + ``fingerprint report`` do:
``fingerprint.extract(zoo, [spec], chunk_size=--chunk-size)`` (the public API) for ``weight-stats`` and
``ood-outputs``; clustering, bootstrap (``--n-boot``), scores and 2-D maps with the functions
``fingerprint report`` uses (``fingerprint.pipeline.analyze``, which stores
``results/basins.json`` and ``scorecard.json``); and ``write_report`` (report.html +
summary.json). The ground truth is the tercile of each model's measured agreement with rule A on
conflict inputs (after one step every ``deep_label`` is "mixed", which would skip the probe and
the within-basin scores). It prints a table of wall time and memory per stage: the peak resident set
within each stage (sampled every 20 ms from ``/proc/self/statm``) and ``ru_maxrss`` (the peak
so far, of this process and of any children). The target is a peak under 2 GB for the whole
analysis process.

    python scripts/bench_stream.py [--n-models 100000] [--workdir /tmp/bench-stream] [--width 136]
                                   [--models-per-batch 1024] [--chunk-size 1024] [--n-boot 5]
                                   [--embedding umap] [--executor local] [--reuse] [--json]

``--reuse`` keeps an existing zoo of the same config in ``--workdir`` (its fingerprint cache and
results are cleared first, so extraction is measured, not read back).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

LABEL = "agreement_tercile"  # the ground truth the scorecard uses (see analyse())
CONFIG = """\
# scripts/bench_stream.py: {n} MLPs of ~20k parameters, one SGD step each
name = "bench-stream"
models_per_batch = {mpb}

[task]
name = "xor-cues"

[model]
arch = "mlp"
width = {width}
depth = 2

[train]
steps = 1
batch_size = 64
optimizer = "sgd"
lr = 1e-6
checkpoints = [1]

[seeds]
init = {init}
data = 2
"""


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def maxrss_mb() -> tuple[float, float]:
    """Peak resident set of this process and of its waited-for children, in MB (Linux: kB units)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


class RssSampler:
    """Peak of the current resident set between ``reset()`` calls (ru_maxrss only ever grows)."""

    def __init__(self, every: float = 0.02):
        self.every, self.peak, self._stop = every, 0.0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        threading.Thread(target=self._run, daemon=True).start()

    def now(self) -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.every)

    def reset(self) -> None:
        self.peak = self.now()


# -- stage 1: the zoo (this process) -----------------------------------------------------------------
def build(args: argparse.Namespace, zoo_dir: Path) -> dict:
    from training.config import SweepConfig, read_config_file
    from training.sweep import build_family, build_task, run_sweep

    cfg_path = args.workdir / "bench-stream.toml"
    cfg_path.write_text(CONFIG.format(n=args.n_models, mpb=args.models_per_batch, width=args.width,
                                      init=args.n_models // 2))
    cfg = SweepConfig.from_dict(read_config_file(cfg_path))
    n_params = sum(math.prod(shape) for shape in build_family(cfg, build_task(cfg)).param_shapes().values())
    if args.reuse and (zoo_dir / "manifest.json").exists():
        for sub in ("fingerprints", "results"):
            shutil.rmtree(zoo_dir / sub, ignore_errors=True)
        resume, t_what = True, "resumed"
    else:
        shutil.rmtree(zoo_dir, ignore_errors=True)
        resume, t_what = False, "built"
    done = [0]
    t0 = time.perf_counter()

    def on_done(sp) -> None:
        done[0] += sp.n_models
        el = time.perf_counter() - t0
        print(f"  sweep: {done[0]:>7} models  {el:7.0f} s", file=sys.stderr, flush=True)

    summary = run_sweep(cfg, zoo_dir, args.executor, resume=resume, on_done=on_done)
    seconds = time.perf_counter() - t0
    shards = du(zoo_dir / "shards")
    return {"n_models": summary.n_planned, "params_per_model": int(n_params), "trained_now": summary.n_trained_now, "seconds": seconds,
            "zoo_bytes": du(zoo_dir), "shard_bytes": shards, "how": t_what, "config": str(cfg_path)}


# -- stage 2: extract + analyse + report (a fresh process) -------------------------------------------
def analyse(args: argparse.Namespace, zoo_dir: Path) -> dict:
    sampler = RssSampler()
    stages: list[dict] = []

    def stage(name: str, t0: float, **extra) -> None:
        self_mb, child_mb = maxrss_mb()
        stages.append({"stage": name, "seconds": time.perf_counter() - t0, "peak_rss_mb": sampler.peak,
                       "maxrss_mb": self_mb, "children_maxrss_mb": child_mb, **extra})
        print(f"  {name}: {stages[-1]['seconds']:.1f} s, peak RSS {sampler.peak:.0f} MB", file=sys.stderr, flush=True)
        sampler.reset()

    t0 = time.perf_counter()
    import numpy as np

    import fingerprint
    from analysis.scorecard import FingerprintInput
    from fingerprint.pipeline import analysis_options, write_report
    from fingerprint.pipeline import analyze as analyze_zoo
    from training.core.store import Zoo

    zoo = Zoo.open(zoo_dir)
    stage("open zoo", t0, n_models=len(zoo))
    inputs = []
    for spec in ("weight-stats", "ood-outputs"):
        t0 = time.perf_counter()
        (r,) = fingerprint.extract(zoo, [spec], chunk_size=args.chunk_size, force=True)
        if r.error:
            raise SystemExit(f"extract {spec} failed: {r.error}")
        meta = {k: v for k, v in (r.meta or {}).items() if k != "extra"}
        meta.setdefault("key", r.key)
        inputs.append(FingerprintInput(str(meta.get("spec") or r.name), r.values, list(r.model_ids), meta))
        stage(f"extract {spec}", t0, shape=list(r.values.shape))
    t0 = time.perf_counter()
    # After one tiny step every model is "mixed" (no ground truth), which would skip the probe and the
    # within-basin scores. Score against a real measured column instead: terciles of the agreement
    # with rule A on conflict inputs (the two models of a family nearly always share a tercile).
    agree = np.asarray(zoo.models["rule_a_agreement"], dtype=float)
    zoo.models.columns[LABEL] = np.asarray(["low", "mid", "high"], dtype=object)[
        np.digitize(agree, np.quantile(agree, [1 / 3, 2 / 3]))]
    opts = analysis_options(None, n_boot=args.n_boot, embedding=args.embedding, label=LABEL)
    result = analyze_zoo(zoo, inputs, opts).to_dict()
    per_fp = {r["fingerprint"]: {"seconds": r.get("seconds"), "k": r.get("k"), "embedding": r.get("embedding_method"),
                                 "error": r.get("error"), "approximations": r.get("approximations")}
              for r in result["fingerprints"]}
    stage("cluster + bootstrap + scores + maps (analyze_zoo)", t0, per_fingerprint=per_fp)
    t0 = time.perf_counter()
    html, js = args.workdir / "report.html", args.workdir / "summary.json"
    write_report(zoo, result, inputs, html, js)
    stage("report.html + summary.json (write_report)", t0, html_bytes=html.stat().st_size, json_bytes=js.stat().st_size)
    rows = [{k: r.get(k) for k in ("fingerprint", "n_models", "n_clusters", "consensus_k", "stability", "deep_ami",
                                    "noise_ami", "lineage_nn", "lineage_nn_chance", "verdict")} for r in result["scorecard"]]
    return {"stages": stages, "scorecard": rows}


def machine() -> str:
    from importlib.metadata import version

    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GB RAM, Python {platform.python_version()}, "
            f"torch {version('torch')}, scikit-learn {version('scikit-learn')}, umap-learn {version('umap-learn')}")


def run_stage(stage: str, args: argparse.Namespace) -> dict:
    """One stage in a fresh interpreter started from this small driver, so that its peak resident set
    is its own (Linux carries the parent's high-water mark into ``ru_maxrss`` across fork + exec)."""
    cmd = [sys.executable, __file__, "--stage", stage, "--n-models", str(args.n_models), "--workdir", str(args.workdir),
           "--width", str(args.width), "--models-per-batch", str(args.models_per_batch), "--chunk-size", str(args.chunk_size),
           "--n-boot", str(args.n_boot), "--embedding", args.embedding, "--executor", args.executor]
    if args.reuse:
        cmd.append("--reuse")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise SystemExit(f"stage '{stage}' failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-models", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-stream"))
    ap.add_argument("--width", type=int, default=136)
    ap.add_argument("--models-per-batch", type=int, default=1024)
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--n-boot", type=int, default=5)
    ap.add_argument("--embedding", default="umap", choices=["umap", "pca"])
    ap.add_argument("--executor", default="local", help="sweep executor: local | process")
    ap.add_argument("--reuse", action="store_true", help="keep an existing zoo of the same config in --workdir")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--stage", choices=["build", "analyse"], help=argparse.SUPPRESS)  # a fresh subprocess
    args = ap.parse_args()
    if args.n_models < 2 or args.n_models % 2:
        ap.error("--n-models must be even (n/2 init seeds x 2 data orders)")
    args.workdir = args.workdir.resolve()
    zoo_dir = args.workdir / "zoo"
    if args.stage:
        res = build(args, zoo_dir) if args.stage == "build" else analyse(args, zoo_dir)
        res["maxrss_mb"], res["children_maxrss_mb"] = maxrss_mb()
        print(json.dumps(res))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"[1/2] sweep: {args.n_models} models -> {zoo_dir}", file=sys.stderr, flush=True)
    built = run_stage("build", args)
    print("[2/2] extract + analyse + report in a fresh process", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    res = run_stage("analyse", args)
    res["wall_seconds"] = time.perf_counter() - t0
    out = {"machine": machine(), "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
           "n_models": built["n_models"], "params_per_model": built["params_per_model"], "build": built, "analysis": res,
           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "stage"}}
    (args.workdir / "bench.json").write_text(json.dumps(out, indent=2))
    if args.json:
        print(json.dumps(out, indent=2))
        return
    gb = lambda b: f"{b / 1e9:.2f} GB"  # noqa: E731
    print(f"machine: {out['machine']}; load average {load[0]:.1f} at start, {out['load_average_at_end'][0]:.1f} at end")
    print(f"zoo: {built['n_models']} models x {out['params_per_model']} params; {built['how']} in {built['seconds']:.0f} s "
          f"(peak RSS of the sweep process {built['maxrss_mb']:.0f} MB); on disk {gb(built['zoo_bytes'])} (shards "
          f"{gb(built['shard_bytes'])}; raw float32 weights {gb(4 * out['params_per_model'] * built['n_models'])})")
    print(f"{'stage':<52} {'time (s)':>9} {'peak RSS (MB)':>14} {'ru_maxrss (MB)':>15}")
    for s in res["stages"]:
        print(f"{s['stage']:<52} {s['seconds']:>9.1f} {s['peak_rss_mb']:>14.0f} {s['maxrss_mb']:>15.0f}")
        for name, fp in (s.get("per_fingerprint") or {}).items():
            print(f"  {name:<50} {fp['seconds'] or 0:>9.1f}   k={fp['k']}, map {fp['embedding']}"
                  + (f", error: {fp['error']}" if fp["error"] else ""))
    print(f"{'analysis process total':<52} {sum(s['seconds'] for s in res['stages']):>9.1f} "
          f"{max(s['peak_rss_mb'] for s in res['stages']):>14.0f} {res['maxrss_mb']:>15.0f}")
    # a forked helper starts with its parent's high-water mark, so this is at most the process's own peak
    print(f"ru_maxrss of the analysis process's children: {res['children_maxrss_mb']:.0f} MB; wall time of the "
          f"analysis process including start-up: {res['wall_seconds']:.0f} s; results and timings: {args.workdir / 'bench.json'}")
    for r in res["scorecard"]:
        print(f"  {r['fingerprint']}: k={r['n_clusters']} bootstrap k={r['consensus_k']} stability={r['stability']} "
              f"deep AMI={r['deep_ami']} noise AMI={r['noise_ami']} 1-NN={r['lineage_nn']} (chance {r['lineage_nn_chance']}) "
              f"-> {r['verdict']}")
    approx = [a for s in res["stages"] for fp in (s.get("per_fingerprint") or {}).values() for a in fp["approximations"] or []]
    for a in dict.fromkeys(approx):
        print(f"sampled: {a}")


if __name__ == "__main__":
    main()
