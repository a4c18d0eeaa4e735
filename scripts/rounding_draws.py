"""Rounding draws: train one config under other float arithmetic, and score fingerprints over the draws.

On the single-rate `modadd-basins` populations a seed's clock/pizza label depends on the float
rounding of its training (docs/results.md, "The label under float rounding alone"), so one training
is one draw of the rounding: its family intervals resample seeds with that draw's labels fixed and
cannot say whether a target is met. Two commands:

    python scripts/rounding_draws.py train CONFIG --arithmetic aten-avx2 --out DIR [--models-per-batch N]
    python scripts/rounding_draws.py score ZOO_1 ... ZOO_K [--fp NAME ...] [--combine A+B ...] [--json out.json]

``train`` runs ``fingerprint sweep CONFIG --out DIR`` in a child process whose environment selects
another arithmetic (:data:`ARITHMETIC`: ``ATEN_CPU_CAPABILITY`` picks torch's own kernels, AVX-512 /
AVX2 / scalar; ``MKL_CBWR`` MKL's code path; both are read when the process starts, hence the child),
refuses a kernel level this CPU cannot run, and records what the child ran with in the zoo
(``results/arithmetic.json``). Join names with ``+`` (``aten-avx2+mkl-compatible``).

``score`` takes K zoos of one config and seeds (checked: anything but the arithmetic differing is
an error naming the zoo and the key) and, for each fingerprint, reports per draw the label counts,
the deep AMI with the three-valued label (calibrated scorecard: verdict), the noise AMI against
``--noise`` (default ``key_freqs``), the AMI of the clusters of the models not in ``--exclude``
(default ``mixed``: clock vs pizza) with its family interval, and whether the issue #23 target is
met (that AMI >= ``--target`` 0.8 and the noise AMI < ``--noise-target`` 0.2); then over the draws a
two-level bootstrap (draws, then init families shared by the draws: :mod:`analysis.draws`) giving
the interval of the mean over draws and of one draw's value, and the share of draws meeting the
target with its Jeffreys interval (K is small: with 6 draws a share of 3/6 has [0.17, 0.83]).
Each fingerprint after the first also gets its gain in mean AMI over the first, with a paired
interval (the same bootstrap samples for both, so the variation they share cancels).
The clusters of each draw are fixed, as in the scorecard's intervals. Scoring stores results in the
zoos (``results/``, as ``fingerprint cluster``) and computes fingerprints not yet cached: score copies.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from analysis.draws import (
    ami_by_families,
    draws_bootstrap,
    paired_difference,
    share_interval,
)
from fingerprint.pipeline import inputs_for, open_zoo, options_for, scorecard
from fingerprint.tables import model_table
from training.core.errors import UserError, choices
from training.core.store import write_json

# name -> environment of the child that trains; what each changed on the project's host (AVX-512):
# docs/results.md, "The label under float rounding alone"
ARITHMETIC: dict[str, dict[str, str]] = {
    "default": {},
    "mkl-compatible": {"MKL_CBWR": "COMPATIBLE"},  # MKL's generic code path (not the CPU's best)
    "mkl-avx2": {"MKL_CBWR": "AVX2,STRICT"},  # MKL's AVX2 path (on that host the same bits as the default)
    "aten-avx512": {"ATEN_CPU_CAPABILITY": "avx512"},  # torch's AVX-512 kernels (the default where the CPU has them)
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},  # torch's AVX2 kernels: what a host without AVX-512 runs
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},  # torch's scalar kernels
}
IGNORED_CONFIG_KEYS = ("name", "fingerprints", "analysis", "forecast", "models_per_batch")  # change no bit or no model


def arithmetic_env(name: str) -> dict[str, str]:
    """The environment variables of an arithmetic name (``+`` joins names; one variable set twice is an error)."""
    env: dict[str, str] = {}
    for part in name.split("+"):
        if part not in ARITHMETIC:
            raise UserError(f"unknown arithmetic {part!r} (valid: {choices(ARITHMETIC)}; join with '+')")
        for k, v in ARITHMETIC[part].items():
            if k in env and env[k] != v:
                raise UserError(f"arithmetic {name!r} sets {k} twice ({env[k]} and {v}); keep one of them")
            env[k] = v
    return env


PROBE = ("import json, torch; from training.core.numerics import host_features; "
         "print(json.dumps({'simd': torch.backends.cpu.get_cpu_capability(), 'host': host_features()}))")


def child_arithmetic(env: dict[str, str]) -> dict:
    """What a child process with ``env`` added runs: torch's kernel level (``simd``) and :func:`host_features`."""
    out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True)
    if out.returncode != 0:
        raise UserError(f"a python process with {env} failed to start torch: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def train(config: str, out: Path, arithmetic: str, extra: list[str]) -> dict:
    """Train ``config`` into ``out`` under ``arithmetic`` (a child ``fingerprint sweep``); record it in the zoo."""
    env = arithmetic_env(arithmetic)
    probe = child_arithmetic(env)
    want = env.get("ATEN_CPU_CAPABILITY")
    if want is not None and probe["simd"].lower() != want.lower():
        raise UserError(f"this CPU cannot run ATen's {want!r} kernels (a process asking for them runs "
                        f"{probe['simd']!r}); choose another arithmetic (valid: {choices(ARITHMETIC)})")
    cmd = [sys.executable, "-m", "fingerprint.cli", "sweep", str(config), "--out", str(out), *extra]
    run = subprocess.run(cmd, env={**os.environ, **env})
    if run.returncode != 0:
        raise UserError(f"training {config} under {arithmetic!r} failed (exit {run.returncode}): {' '.join(cmd)}")
    record = {"arithmetic": arithmetic, "env": env, "simd": probe["simd"], "host": probe["host"],
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    open_zoo(out).save_result("arithmetic", record)
    return record


# -- scoring over draws -----------------------------------------------------------------------------
def _first_difference(a, b, path: str = "") -> str | None:
    """The first key path at which two JSON-like values differ (None: equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if path == "" and k in IGNORED_CONFIG_KEYS:
                continue
            if k not in a or k not in b:
                return f"{path}{k}"
            d = _first_difference(a[k], b[k], f"{path}{k}.")
            if d is not None:
                return d
        return None
    return None if a == b else path.rstrip(".")


def _lookup(obj, path: str):
    for k in path.split("."):
        obj = obj.get(k, "(missing)") if isinstance(obj, dict) else "(missing)"
    return obj


def check_draws(zoos: list) -> None:
    """Raise a :class:`UserError` naming the zoo and the culprit unless every zoo is the first one's
    config (up to :data:`IGNORED_CONFIG_KEYS`), task and models with the same seeds."""
    ref = zoos[0]
    paths = [Path(z.path).resolve() for z in zoos]
    twice = next((p for i, p in enumerate(paths) if p in paths[:i]), None)
    if twice is not None:
        raise UserError(f"zoo '{twice}' is given twice: each draw is another training (copy a zoo only to score it)")
    for z in zoos[1:]:
        for what, a, b in (("config", ref.config, z.config), ("task parameters", ref.task_params, z.task_params)):
            d = _first_difference(a, b)
            if d is not None:
                raise UserError(f"zoo '{z.path}' is not a draw of zoo '{ref.path}': {what} key {d!r} is "
                                f"{_lookup(b, d)!r} there and {_lookup(a, d)!r} here (draws differ only in arithmetic)")
        ids_a, ids_b = set(ref.model_ids), set(z.model_ids)
        if ids_a != ids_b:
            extra, missing = sorted(ids_b - ids_a), sorted(ids_a - ids_b)
            raise UserError(f"zoo '{z.path}' is not a draw of zoo '{ref.path}': models "
                            + (f"{extra[:3]} only there" if extra else f"{missing[:3]} missing there"))
        ia, ib = ref.index(ref.model_ids), z.index(ref.model_ids)
        for col in ("init_seed", "data_seed"):
            if col in ref.models.names() and col in z.models.names():
                va, vb = np.asarray(ref.models[col])[ia], np.asarray(z.models[col])[ib]
                bad = np.flatnonzero(va.astype(str) != vb.astype(str))
                if bad.size:
                    m = ref.model_ids[bad[0]]
                    raise UserError(f"zoo '{z.path}' is not a draw of zoo '{ref.path}': model {m!r} has "
                                    f"{col} {vb[bad[0]]} there and {va[bad[0]]} here")


def draw_name(zoo) -> str:
    rec = zoo.load_result("arithmetic")
    return str(rec.get("arithmetic")) if isinstance(rec, dict) and rec.get("arithmetic") else Path(zoo.path).name


def score_draw(zoo, fps: list[str] | None, combine, label: str, exclude: tuple[str, ...], noise: str) -> dict:
    """One draw: the calibrated scorecard (deep AMI, verdict), the noise AMI against ``noise``
    (uncalibrated) and the pass over the models not in ``exclude`` (uncalibrated), per fingerprint:
    ``{fingerprint: {...}}`` with each pass's clusters, labels and model ids for the bootstrap."""
    from analysis.scorecard import analyze

    table = model_table(zoo)
    for col in (label, noise, "init_seed"):
        if col not in table:
            raise UserError(f"zoo '{zoo.path}' has no model column {col!r} (valid: {choices(table)})")
    by_init = scorecard(zoo, fps, combine=combine, label=label)
    by_noise = scorecard(zoo, fps, lineage=noise, calibrate=False, combine=combine, label=label)
    keep = ~np.isin(np.asarray([str(x) for x in table[label]]), list(exclude))
    opts = options_for(zoo, calibrate=False, combine=combine, label=label)
    cp = analyze(inputs_for(zoo, fps, opts.label), {k: np.asarray(v)[keep] for k, v in table.items()}, opts)
    family = dict(zip([str(m) for m in table["model_id"]], [str(s) for s in table["init_seed"]]))
    out = {}
    for a in by_init.scorecard:
        f, fc = by_init.fingerprint(a.fingerprint), cp.fingerprint(a.fingerprint)
        b = next(x for x in by_noise.scorecard if x.fingerprint == a.fingerprint)
        c = next(x for x in cp.scorecard if x.fingerprint == a.fingerprint)
        out[a.fingerprint] = {
            "k": a.n_clusters, "deep_ami": a.deep_ami, "verdict": a.verdict, "noise_ami": b.noise_ami,
            "k_cp": c.n_clusters, "ami_cp": c.deep_ami, "probe_auroc_cp": c.probe_auroc, "error": a.error,
            "full": _pass(f, family), "cp": _pass(fc, family)}
    return out


def _pass(res, family: dict) -> dict | None:
    if not res.clusters or res.label_values is None:
        return None
    return {"clusters": list(res.clusters), "labels": list(res.label_values),
            "family": [family[str(m)] for m in res.model_ids]}


def _r(v):
    return None if v is None or not np.isfinite(v) else round(float(v), 3)


def _ci(ci):
    return None if ci is None else [round(float(x), 3) for x in ci]


def over_draws(passes: list[dict | None], n_boot: int, seed: int, target: float | None = None) -> tuple[dict, object]:
    """Per-draw family intervals and the two-level bootstrap of the AMI of fixed clusters with the
    label, over the draws whose pass exists (and the bootstrap itself, for paired differences).
    Families: those of every draw's pass, in one order."""
    have = [p for p in passes if p is not None]
    names = sorted({f for p in have for f in p["family"]})
    stats = [ami_by_families(p["clusters"], p["labels"], p["family"], names) for p in have]
    own = []
    for p in passes:  # each draw alone, on its own families: the scorecard's family interval
        if p is None:
            own.append(None)
            continue
        mine = sorted(set(p["family"]))
        b = draws_bootstrap([ami_by_families(p["clusters"], p["labels"], p["family"], mine)], len(mine), n_boot, seed)
        own.append(None if b is None else _ci(b.mean_ci))
    both = draws_bootstrap(stats, len(names), n_boot, seed, families=names,
                           trainings=[i for i, p in enumerate(passes) if p is not None]) if stats else None
    out = {"family_ci": own, "n_draws": len(have), "n_families": len(names),
           "mean_ci": None if both is None else _ci(both.mean_ci),
           "one_draw_ci": None if both is None else _ci(both.one_draw_ci)}
    if target is not None and both is not None:
        out["one_draw_share_at_least_target"] = _r(both.share_at_least(target))
    return out, both


def score(paths: list[Path], fps: list[str] | None, combine, label: str = "deep_label", exclude=("mixed",),
          noise: str = "key_freqs", target: float = 0.8, noise_target: float = 0.2, n_boot: int = 1000,
          seed: int = 0) -> dict:
    """Score ``fps`` on every draw and over the draws (module docstring); the JSON of ``--json``."""
    zoos = [open_zoo(p) for p in paths]
    check_draws(zoos)
    names = [draw_name(z) for z in zoos]
    per_draw = [score_draw(z, fps, combine, label, tuple(exclude), noise) for z in zoos]
    counts = [dict(sorted(Counter(str(x) for x in z.models[label]).items())) for z in zoos]
    out = {"draws": [{"zoo": str(z.path), "name": n, "labels": c} for z, n, c in zip(zoos, names, counts)],
           "label": label, "exclude": list(exclude), "noise": noise, "target": {"ami_cp": target, "noise_ami": noise_target},
           "n_boot": n_boot, "seed": seed, "fingerprints": []}
    ref = None  # the first fingerprint's clock/pizza bootstrap: the others' paired gain is over it
    for fp in per_draw[0]:
        rows = [d.get(fp) for d in per_draw]
        if any(r is None for r in rows):
            raise UserError(f"fingerprint {fp!r} is not scored on every draw (draws: {choices(names)})")
        met = [None if r["ami_cp"] is None or r["noise_ami"] is None
               else bool(r["ami_cp"] >= target and r["noise_ami"] < noise_target) for r in rows]
        cp, cp_boot = over_draws([r["cp"] for r in rows], n_boot, seed, target)
        deep, _ = over_draws([r["full"] for r in rows], n_boot, seed)
        judged = [m for m in met if m is not None]
        hits = int(sum(judged))
        vals_cp = [r["ami_cp"] for r in rows if r["ami_cp"] is not None]
        vals_deep = [r["deep_ami"] for r in rows if r["deep_ami"] is not None]
        out["fingerprints"].append({
            "fingerprint": fp,
            "per_draw": [{"name": n, "k": r["k"], "deep_ami": _r(r["deep_ami"]), "deep_ami_ci": dci, "verdict": r["verdict"],
                          "noise_ami": _r(r["noise_ami"]), "k_cp": r["k_cp"], "ami_cp": _r(r["ami_cp"]), "ami_cp_ci": cci,
                          "probe_auroc_cp": _r(r["probe_auroc_cp"]), "target_met": m, "error": r["error"]}
                         for n, r, m, dci, cci in zip(names, rows, met, deep["family_ci"], cp["family_ci"])],
            "ami_cp": {"mean": _r(np.mean(vals_cp)) if vals_cp else None, "min": _r(min(vals_cp, default=np.nan)),
                       "max": _r(max(vals_cp, default=np.nan)), **{k: v for k, v in cp.items() if k != "family_ci"}},
            "deep_ami": {"mean": _r(np.mean(vals_deep)) if vals_deep else None, **{k: v for k, v in deep.items() if k != "family_ci"}},
            "target_met": {"hits": hits, "n": len(judged), "share": _r(hits / len(judged)) if judged else None,
                           "jeffreys_95": _ci(share_interval(hits, len(judged)))},
            "verdicts": dict(Counter(r["verdict"] for r in rows)),
        })
        if ref is None:
            ref = (fp, cp_boot, vals_cp)
        elif cp_boot is not None and ref[1] is not None and len(vals_cp) == len(ref[2]):
            try:  # the same draws and families for both: the gain over the first fingerprint, paired
                ci = paired_difference(cp_boot, ref[1])
            except ValueError:  # another set of families in the passes: not paired
                ci = None
            if ci is not None:
                out["fingerprints"][-1]["ami_cp"]["gain_over_first"] = {
                    "reference": ref[0], "mean": _r(np.mean(vals_cp) - np.mean(ref[2])), "ci": _ci(ci)}
    return out


def _print(res: dict) -> None:
    print("draws: " + "; ".join(f"{d['name']} {d['labels']}" for d in res["draws"]))
    for f in res["fingerprints"]:
        print(f"\n{f['fingerprint']}")
        for d in f["per_draw"]:
            print(f"  {d['name']:<28} deep AMI {d['deep_ami']} {d['deep_ami_ci']} {d['verdict']}; noise {d['noise_ami']}; "
                  f"AMI without {'/'.join(res['exclude'])} {d['ami_cp']} {d['ami_cp_ci']}; target met: {d['target_met']}")
        a, t = f["ami_cp"], f["target_met"]
        print(f"  over {a['n_draws']} draws: AMI mean {a['mean']} {a['mean_ci']} (one draw {a['one_draw_ci']}); "
              f"deep AMI mean {f['deep_ami']['mean']} {f['deep_ami']['mean_ci']}; "
              f"target met on {t['hits']} of {t['n']} {t['jeffreys_95']}")
        if "gain_over_first" in a:
            g = a["gain_over_first"]
            print(f"  gain over {g['reference']}: {g['mean']} {g['ci']} (paired: the same samples)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a config under another arithmetic (a child fingerprint sweep)")
    t.add_argument("config")
    t.add_argument("--arithmetic", required=True, help=f"one of {', '.join(ARITHMETIC)}, or several joined by '+'")
    t.add_argument("--out", required=True, type=Path)
    s = sub.add_parser("score", help="score fingerprints over K draws of one config")
    s.add_argument("zoos", nargs="+", type=Path)
    s.add_argument("--fp", action="append", default=None, help="fingerprints (default: every cached one)")
    s.add_argument("--combine", action="append", default=None, help="also score A+B+... concatenated (repeatable)")
    s.add_argument("--label", default="deep_label")
    s.add_argument("--exclude", action="append", default=None, help="labels left out of the second pass (default: mixed)")
    s.add_argument("--noise", default="key_freqs", help="the nuisance column of the target's noise AMI")
    s.add_argument("--target", type=float, default=0.8)
    s.add_argument("--noise-target", type=float, default=0.2)
    s.add_argument("--n-boot", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", type=Path)
    args, extra = ap.parse_known_args(argv)
    try:
        if args.cmd == "train":
            print(json.dumps(train(args.config, args.out, args.arithmetic, extra)))
            return 0
        if extra:
            ap.error(f"unrecognized arguments: {' '.join(extra)}")
        combine = [c.split("+") for c in args.combine] if args.combine else None
        exclude = tuple(args.exclude) if args.exclude is not None else ("mixed",)
        res = score(args.zoos, args.fp, combine, args.label, exclude, args.noise, args.target, args.noise_target,
                    args.n_boot, args.seed)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _print(res)
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
