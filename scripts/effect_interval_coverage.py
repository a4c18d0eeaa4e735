"""How often the effect sizes' 95% family-bootstrap intervals cover the population's value: basic
widened for the number of families (what ``analysis.effect.basin_effect`` reports since
``METHODS_VERSION`` 16; a share's on the angular scale, arcsin(sqrt(share)), since 19, printed beside
the linear scale it had before, with how often each interval's lower end is 0), basic (14-15) and
percentile (before), from the same bootstrap samples; the separation's on the log scale.

usage: python scripts/effect_interval_coverage.py [--reps 200] [--boot 200] [--json]

Synthetic populations of Gaussian fingerprints: ``families`` init families of ``members`` models,
a family effect (SD ``family_sd``) and member noise (SD ``member_sd``) in ``dims`` dimensions, and
two basins ``delta`` apart along the first, either crossing every family (one camp per member,
``crossed``) or whole families on each side. The population's value of each statistic is its value
on 20,000 families drawn the same way. Per design: the population's share of variance and
separation, the mean of the sample's and of the bias-corrected estimates, and the share of ``reps``
populations whose interval covers the population's value, widened, basic and percentile.
docs/results.md, "Effect-size intervals: basic, not percentile", "Effect-size intervals at few
families" and "Share intervals on the angular scale".
"""

import argparse
import json

import numpy as np

from analysis.effect import _share_samples, separation, share_of_variance
from analysis.labelfree import _family_centred
from analysis.resampling import (
    basic_interval,
    family_bootstrap_batch_values,
    family_bootstrap_values,
    percentile_interval,
    small_sample_expansion,
)

# (families, members, dims, family_sd, member_sd, delta, crossed)
DESIGNS = [(6, 2, 5, 1.0, 0.3, 2.0, True), (6, 2, 5, 0.3, 1.0, 3.0, True), (8, 2, 5, 1.0, 0.5, 3.0, True),
           (12, 2, 5, 1.0, 0.5, 3.0, True), (16, 2, 20, 1.0, 1.0, 3.0, True), (8, 3, 5, 1.0, 0.5, 3.0, False),
           (4, 4, 5, 1.0, 0.5, 3.0, True), (24, 2, 5, 1.0, 0.5, 3.0, True), (6, 4, 5, 1.0, 0.5, 3.0, False)]
METHODS = ("widened", "widened-linear", "basic", "percentile")


def population(families: int, members: int, dims: int, family_sd: float, member_sd: float, delta: float,
               crossed: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x [n, dims], basins [n], family [n])`` of one synthetic population."""
    fam = np.repeat(np.arange(families), members)
    basins = np.tile(np.arange(members) % 2, families) if crossed else (np.arange(families) % 2)[fam]
    x = rng.normal(0, family_sd, (families, dims))[fam] + rng.normal(0, member_sd, (len(fam), dims))
    x[:, 0] += delta * (basins - 0.5)
    return x, basins, fam.astype(str)


def coverage(design: tuple, reps: int, n_boot: int) -> dict:
    """The population's values and the three intervals' coverage over ``reps`` populations of ``design``."""
    crossed = design[-1]
    rng = np.random.default_rng(0)
    xb, bb, fb = population(20_000, *design[1:], rng)
    sep_x = (lambda x, f: _family_centred(x, f)) if crossed else (lambda x, f: x)
    truth = {"share": share_of_variance(xb, bb), "separation": separation(sep_x(xb, fb), bb)}
    hits = {(s, m): 0 for s in truth for m in METHODS}
    zero = {(s, m): 0 for s in truth for m in METHODS[:2]}  # intervals whose lower end is 0
    widen = small_sample_expansion(design[0])
    sample = {s: [] for s in truth}
    corrected = {s: [] for s in truth}
    for r in range(reps):
        x, b, fam = population(*design[:-1], crossed, rng)
        values = {"share": share_of_variance(x, b), "separation": separation(sep_x(x, fam), b)}
        boots = {"share": family_bootstrap_batch_values(_share_samples(x, b, fam, False), fam, n_boot, r),
                 "separation": family_bootstrap_values(lambda rows, d: separation(sep_x(x[rows], d), b[rows]),
                                                       fam, n_boot, r)}
        for s, v in values.items():
            sep = s == "separation"  # on the log scale, as basin_effect does
            bounds = (0.0, np.inf if sep else 1.0)
            mid, wlo, whi = basic_interval(boots[s], v, n_boot, 0.95, bounds, log=sep, angular=not sep, expand=widen)
            _, llo, lhi = basic_interval(boots[s], v, n_boot, 0.95, bounds, log=sep, expand=widen)
            _, lo, hi = basic_interval(boots[s], v, n_boot, 0.95, bounds, log=sep, angular=not sep)
            plo, phi = percentile_interval(list(boots[s]), n_boot, 0.95)
            hits[s, "widened"] += wlo <= truth[s] <= whi
            hits[s, "widened-linear"] += llo <= truth[s] <= lhi
            hits[s, "basic"] += lo <= truth[s] <= hi
            zero[s, "widened"] += wlo <= 0.0
            zero[s, "widened-linear"] += llo <= 0.0
            hits[s, "percentile"] += plo <= truth[s] <= phi
            sample[s].append(v)
            corrected[s].append(mid)
    out = {"design": dict(zip(("families", "members", "dims", "family_sd", "member_sd", "delta", "crossed"), design))}
    for s in truth:
        out[s] = {"population": round(truth[s], 4), "sample_mean": round(float(np.mean(sample[s])), 4),
                  "corrected_mean": round(float(np.mean(corrected[s])), 4),
                  **{m: round(hits[s, m] / reps, 3) for m in METHODS},
                  **{f"{m}_at_0": round(zero[s, m] / reps, 3) for m in METHODS[:2]}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = [coverage(d, a.reps, a.boot) for d in DESIGNS]
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    for row in rows:
        d = row["design"]
        print(f"{d['families']} x {d['members']}, {d['dims']} dims, family SD {d['family_sd']}, member SD "
              f"{d['member_sd']}, delta {d['delta']}, {'crossing families' if d['crossed'] else 'whole families'}")
        for s in ("share", "separation"):
            r = row[s]
            print(f"  {s}: population {r['population']:.3g}, sample {r['sample_mean']:.3g}, bias-corrected "
                  f"{r['corrected_mean']:.3g}; 95% coverage widened {r['widened']:.1%}"
                  + (f" (on the linear scale {r['widened-linear']:.1%})" if s == "share" else "")
                  + f", basic {r['basic']:.1%}, percentile {r['percentile']:.1%}; widened interval at 0: "
                  f"{r['widened_at_0']:.1%}" + (f" (linear {r['widened-linear_at_0']:.1%})" if s == "share" else ""))


if __name__ == "__main__":
    main()
