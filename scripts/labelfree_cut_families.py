"""Cut families of a `groups lineages` split: each family on its majority side, or each model on its own?

    python scripts/labelfree_cut_families.py [--seeds 40] [--n-null 199]

When the all-model split of :func:`analysis.labelfree.label_free` cuts fewer than a third of the
families with relatives, the verdict is `groups lineages` and its candidate basins were each family on
its majority side (``majority``); the alternative is each model of a cut family on its own side of the
split, whole families as they are (``own side``). Which is closer to the truth depends on why a
family is cut: by a difference its seed did not decide (then its members differ, and ``own side`` is
right) or by member noise across the boundary of a seed-decided difference (then ``majority`` is).
Both partitions go through :func:`analysis.effect.sized` and :func:`analysis.labelfree.decide` as
the scorecard's would, on synthetic populations (:mod:`analysis.synthetic`):

- ``partial``: :func:`~analysis.synthetic.partly_seeded_population`, the seed decides the factor in a
  share of the families (0.8, 0.6), coin flips in the rest (the outside audit's MLPs);
- ``groups``: the seed decides it in every family (``synthetic_population("groups")``), so every
  cut is member noise;
- nulls (``null``, ``null-t``, ``null-skew``, ``null-flat``): no factor; a verdict that changes is a
  false one gained or lost.

Three rules: ``majority`` (version 9), ``own`` (own side, sized and decided alone) and ``both`` (own
side reported and sized; the verdict also needs the majority partition not small: version 10).
Prints per design and kind: populations with a `groups lineages` verdict from the split under each
rule, families cut (and how many truly hold both values), and the mean AMI with the truth of the
majority and the version-10 candidate basins. docs/scorecard.md ("Cut families") quotes its output.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from analysis import effect
from analysis import labelfree as lf
from analysis.metrics import ami
from analysis.synthetic import partly_seeded_population, synthetic_population

DESIGNS = ((12, 2), (12, 4), (24, 2))
NULLS = ("null", "null-t", "null-skew", "null-flat")


def partitions(res: lf.LabelFreeResult, fam: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(majority, own side, cut families)`` of the all-model split of ``res`` (models ``[n]``)."""
    split = np.asarray(res.split_basins)
    majority = np.zeros(len(fam), int)
    cut = []
    for f in np.unique(fam):
        m = fam == f
        sides = split[m][split[m] >= 0]
        majority[m] = int(round(sides.mean())) if len(sides) else -1
        if len(np.unique(sides)) > 1:
            cut.append(int(f))
    own = np.where(split >= 0, split, majority)
    return majority, own, cut


RULES = ("majority", "own", "both")  # version 9; own side sized alone; own side reported, neither small (version 10)


def one(x: np.ndarray, fam: np.ndarray, label: np.ndarray, seed: int, n_null: int) -> dict:
    res = lf.label_free(x, fam, n_null, seed)
    out = {}
    if res.split_within or res.split_basins is None:  # the within-family camps: crosses lineage if anything
        base = lf.decide([effect.sized(res, fam, x, None, False, np.zeros(len(x), int), n_boot=20)])[0]
        return {**{k: base.verdict for k in RULES}, "cut": [], "mixed": 0, "ami": {}}
    majority, own, cut = partitions(res, fam)
    amis = {}
    for name, part, guard in (("majority", majority, majority), ("own", own, own), ("both", own, majority)):
        r = effect.sized(replace(res, split_families=part, split_majority=guard), fam, x, None, False,
                         np.zeros(len(x), int), n_boot=20)
        d = lf.decide([r])[0]
        out[name] = d.verdict
        if d.verdict == "groups lineages" and d.candidate_basins is not None and d.candidate_basins is part:
            out[name] = "groups (split)"
            amis[name] = ami(label, part)
    mixed = sum(len(np.unique(label[fam == f])) > 1 for f in cut)
    return {**out, "cut": cut, "mixed": mixed, "ami": amis}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--n-null", type=int, default=199)
    args = ap.parse_args()
    t0 = time.time()
    kinds = [("partial 0.8", 4.0), ("partial 0.6", 4.0), ("partial 0.8", 3.0), ("groups", 4.0), ("groups", 3.0), ("groups", 2.0)]
    kinds += [(k, 0.0) for k in NULLS]
    print("design  kind          delta  groups from the split: majority / own / both   cut fams (truly mixed, with 'both')  "
          "AMI with the truth: majority -> both (populations with both; both better, worse)")
    for n_fam, m in DESIGNS:
        for kind, delta in kinds:
            rows = []
            for s in range(args.seeds):
                if kind.startswith("partial"):
                    x, fam, label = partly_seeded_population(s, n_fam, m, delta=delta, decided=float(kind.split()[1]))
                else:
                    x, fam, label = synthetic_population(kind, s, n_fam, m, delta=delta)
                rows.append(one(x, fam, label, s, args.n_null))
            g = {k: sum(r[k] == "groups (split)" for r in rows) for k in RULES}
            same = [r for r in rows if "majority" in r["ami"] and "both" in r["ami"]]
            n_cut = sum(len(r["cut"]) for r in rows if r["both"] == "groups (split)")
            n_mixed = sum(r["mixed"] for r in rows if r["both"] == "groups (split)")
            a_maj = np.mean([r["ami"]["majority"] for r in same]) if same else float("nan")
            a_both = np.mean([r["ami"]["both"] for r in same]) if same else float("nan")
            better = sum(r["ami"]["both"] > r["ami"]["majority"] + 1e-9 for r in same)
            worse = sum(r["ami"]["both"] < r["ami"]["majority"] - 1e-9 for r in same)
            print(f"{n_fam:2d} x {m}  {kind:12s}  {delta:4.1f}   {g['majority']:3d} / {g['own']:3d} / {g['both']:3d}"
                  f"                         {n_cut:3d} ({n_mixed})                              {a_maj:.3f} -> {a_both:.3f} "
                  f"({len(same)}; {better}, {worse})", flush=True)
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
