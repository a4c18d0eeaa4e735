"""Does taking a recorded setting out (``--covariate``) keep the label-free tests at their level, and find
a difference beyond it?

    python scripts/covariate_calibration.py [--sims 200] [--n-null 99] [--unequal]

Synthetic populations: ``n`` models with 50 Gaussian features of decaying scale, in init families of
``m`` (``m = 1``: every model its own family, the case ``--strata`` cannot help; ``m = 2, 3``: whole
families nested in the setting's levels, a family effect 1 SD), a recorded setting of ``L`` levels
given to the families in turn (balanced; 2 models a level in the smallest designs, whose residuals
are mirror-image pairs), and three kinds:

- ``null``: nothing but seed noise;
- ``setting``: each level of the setting shifts the models by 3 feature SDs (an optimizer's camps);
- ``setting+rule``: that, and a planted difference of 2.5 SDs in half the models, crossed with the
  setting (each level holds both kinds), which a sweep wants found beyond the setting.

Each population goes through the scorecard's path for one fingerprint: the fit of the setting taken
out (:func:`analysis.covariates.taken_out`) or not, standardised, a 10-dim PCA
(:func:`analysis.reduce.coordinates`), then :func:`analysis.labelfree.label_free`. Prints per design:
the share of populations with a raw groups or split p-value at or below 0.05, without and with the
fit, and for ``setting+rule`` the mean AMI of the tests' basins (groups, else split) with the rule.
``--unequal``: instead, a rule crossed with a 2-level setting in unequal cells (24 independent models:
6/6/6/6, 8/4/4/8, 10/2/2/10 of rule A at level 0, A at 1, B at 0, B at 1), the setting 3 SDs or
none, the rule 2.5 SDs or none (audit 92: each level's mean holds its share of the rule). docs/scorecard.md
("Taking a recorded setting out") quotes its output.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from analysis import covariates
from analysis import labelfree as lf
from analysis.metrics import ami
from analysis.reduce import coordinates

DESIGNS = ((12, 2, 1), (24, 2, 1), (24, 4, 1), (24, 6, 1), (48, 3, 1), (12, 6, 1), (16, 8, 1), (24, 3, 2), (24, 4, 3))
KINDS = ("null", "setting", "setting+rule")


def population(n: int, levels: int, kind: str, rng: np.random.Generator, m: int = 1
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(features [n, 50], setting [n], rule [n], family [n])`` of one synthetic population."""
    d = 50
    scale = np.exp(-np.arange(d) / 8)
    family = np.arange(n) // m
    x = rng.standard_normal((n, d)) * scale + (m > 1) * rng.standard_normal((n // m, d))[family] * scale
    setting = family % levels
    rule = (family // levels) % 2  # crossed with the setting: each level holds both (seed-decided in a family)
    if kind != "null":
        x += 3 * rng.standard_normal((levels, d))[setting] * scale
    if kind == "setting+rule":
        x += 2.5 * np.outer(rule - 0.5, rng.standard_normal(d)) * scale
    return x, np.asarray([f"L{v}" for v in setting], dtype=object), rule, family.astype(str).astype(object)


def one(x: np.ndarray, setting: np.ndarray | None, n_null: int, seed: int, family: np.ndarray | None = None
        ) -> lf.LabelFreeResult:
    """The scorecard's path for one fingerprint: the setting's fit taken out (and its design given to the
    tests), standardised, a 10-dim PCA, the label-free tests."""
    taken = cells = None
    if setting is not None:
        f = covariates.fit({"setting": setting})
        x, taken, cells = covariates.taken_out(x, False, True, f)[0], f.design, f.levels
    c = coordinates(x, False, 10, 0, True)
    family = [f"m{i}" for i in range(len(x))] if family is None else family
    return lf.label_free(c, family, n_null=n_null, random_state=seed, taken=taken, taken_cells=cells)


def unequal(cells: tuple[int, int], setting_sd: float, rule_sd: float, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(features [24, 50], setting [24], rule [24])``: rule A at level 0 ``a``, A at 1 ``b``, B at 0 ``b``, B at 1 ``a``."""
    a, b = cells
    scale = np.exp(-np.arange(50) / 8)
    setting = np.array([0] * a + [1] * b + [0] * b + [1] * a)
    rule = np.repeat([0, 1], a + b)
    x = rng.standard_normal((len(rule), 50)) * scale + setting_sd * rng.standard_normal((2, 50))[setting] * scale
    x += rule_sd * np.outer(rule - 0.5, rng.standard_normal(50)) * scale
    return x, np.asarray([f"L{v}" for v in setting], dtype=object), rule


def main_unequal(sims: int, n_null: int) -> None:
    print(f"{'cells':>10} {'setting':>7} {'rule':>4} {'p<=.05 raw':>10} {'p<=.05 fit':>10} {'AMI(rule) raw':>13} {'AMI(rule) fit':>13}")
    for cells in ((6, 6), (8, 4), (10, 2)):
        for setting_sd, rule_sd in ((0.0, 2.5), (3.0, 2.5), (3.0, 0.0)):
            rng = np.random.default_rng(7)
            hits, amis = {"raw": [], "fit": []}, {"raw": [], "fit": []}
            for s in range(sims):
                x, setting, rule = unequal(cells, setting_sd, rule_sd, rng)
                for how, cov in (("raw", None), ("fit", setting)):
                    r = one(x, cov, n_null, s)
                    hits[how].append(min(r.p_groups, r.p_split) <= 0.05)
                    amis[how].append(ami(r.group_basins if r.p_groups <= r.p_split else r.split_basins, rule) or 0.0)
            c = f"{cells[0]}/{cells[1]}/{cells[1]}/{cells[0]}"
            print(f"{c:>10} {setting_sd:>7} {rule_sd:>4} {np.mean(hits['raw']):>10.3f} {np.mean(hits['fit']):>10.3f} "
                  f"{np.mean(amis['raw']):>13.2f} {np.mean(amis['fit']):>13.2f}", flush=True)


LINEAGE_DESIGNS = ((24, 2, 3, "nested"), (24, 4, 3, "nested"), (24, 4, 2, "nested"), (48, 4, 4, "nested"),
                   (24, 3, 3, "crossed"), (48, 4, 4, "crossed"), (24, 0, 3, "trend"), (48, 0, 4, "trend"))


def lineage_population(n: int, levels: int, m: int, how: str, family_sd: float, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(features [n, 50], the setting's shift [n, 50], setting [n], family [n])``: init families of ``m``
    whose members share a shift of ``family_sd`` SDs, a setting of ``levels`` levels (3 SDs) given family by
    family (``nested``: whole families in a level) or member by member (``crossed``: a data order's levels
    inside every family), or ``trend``: a number drawn per model (a learning rate's log), its shift along one
    direction 3 SDs over its range."""
    scale = np.exp(-np.arange(50) / 8)
    family = np.arange(n) // m
    x = rng.standard_normal((n, 50)) * scale + family_sd * rng.standard_normal((n // m, 50))[family] * scale
    if how == "trend":
        value = rng.uniform(0, 1, n)
        return x, 3 * np.outer(value, rng.standard_normal(50)) * scale, value, family.astype(str).astype(object)
    setting = family % levels if how == "nested" else np.arange(n) % m % levels
    shift = 3 * rng.standard_normal((levels, 50))[setting] * scale
    return x, shift, np.asarray([f"L{v}" for v in setting], dtype=object), family.astype(str).astype(object)


def main_lineage(sims: int, n_null: int) -> None:
    """The lineage test beside the fit: at its level with no family effect, and its power at 0.5 and 1 SD,
    against the same families without the setting (nothing taken out: the power to aim at)."""
    print(f"{'n':>3} {'L':>2} {'m':>2} {'design':<8} {'family SD':>9} {'p<=.05 no setting':>17} {'p<=.05 fit':>10}")
    for n, levels, m, how in LINEAGE_DESIGNS:
        for family_sd in (0.0, 0.5, 1.0):
            rng = np.random.default_rng(100 * n + 10 * levels + m)
            hits = {"plain": [], "fit": []}
            for s in range(sims):
                x, shift, setting, family = lineage_population(n, levels, m, how, family_sd, rng)
                hits["plain"].append(one(x, None, n_null, s, family).p_lineage <= 0.05)  # no setting at all
                hits["fit"].append(one(x + shift, setting, n_null, s, family).p_lineage <= 0.05)
            print(f"{n:>3} {levels:>2} {m:>2} {how:<8} {family_sd:>9} {np.mean(hits['plain']):>17.3f} "
                  f"{np.mean(hits['fit']):>10.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--n-null", type=int, default=99)
    ap.add_argument("--unequal", action="store_true", help="a rule crossed with the setting in unequal cells instead")
    ap.add_argument("--lineage", action="store_true", help="the lineage test beside the fit, families nested in the "
                    "setting's levels or crossed with them, instead")
    args = ap.parse_args()
    t0 = time.time()
    if args.lineage:
        main_lineage(args.sims, args.n_null)
        print(f"({args.sims} populations a row, {args.n_null} null replicates; {time.time() - t0:.0f} s)")
        return
    if args.unequal:
        main_unequal(args.sims, args.n_null)
        print(f"({args.sims} populations a row, {args.n_null} null replicates; {time.time() - t0:.0f} s)")
        return
    print(f"{'n':>3} {'L':>2} {'m':>2} {'kind':<13} {'p<=.05 raw':>10} {'p<=.05 fit':>10} {'AMI(rule) raw':>13} {'AMI(rule) fit':>13}")
    for n, levels, m in DESIGNS:
        for kind in KINDS:
            rng = np.random.default_rng(1000 * n + 10 * levels + m)
            hits, amis = {"raw": [], "fit": []}, {"raw": [], "fit": []}
            for s in range(args.sims):
                x, setting, rule, family = population(n, levels, kind, rng, m)
                for how, cov in (("raw", None), ("fit", setting)):
                    r = one(x, cov, args.n_null, s, family)
                    p = [v for v in (r.p_groups, r.p_split) if v is not None]
                    hits[how].append(bool(p) and min(p) <= 0.05)
                    basins = r.group_basins if (r.p_groups or 1) <= (r.p_split or 1) else r.split_basins
                    amis[how].append(ami(basins, rule) or 0.0)
            show = kind == "setting+rule"
            print(f"{n:>3} {levels:>2} {m:>2} {kind:<13} {np.mean(hits['raw']):>10.3f} {np.mean(hits['fit']):>10.3f} "
                  + (f"{np.mean(amis['raw']):>13.2f} {np.mean(amis['fit']):>13.2f}" if show else f"{'':>13} {'':>13}"))
    print(f"({args.sims} populations a row, {args.n_null} null replicates; {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
