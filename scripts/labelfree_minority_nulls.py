"""How often a seed-only null population gets a deep verdict from the minority rule
(``analysis.labelfree.minority``: a split whose smaller side is models of several families, each
beside relatives on the other side, crosses lineage whatever share of the families it cuts).

usage: python scripts/labelfree_minority_nulls.py [--reps 200] [--json]

Synthetic populations of ``families`` init families of ``members`` models in 8 dimensions: a family
effect (SD 1) and member noise (SD 0.5) drawn Gaussian or Student t with ``df`` degrees of freedom
(heavy tails: lone outliers in every direction, the case a minority rule could mistake for a few
models that learned something else). Each goes through the label-free tests, their sizes and the
decision as one fingerprint (199 null replicates). Per design: the share of populations with a
`crosses lineage` verdict, and with one from a split that cuts fewer than a third of the families
(only the minority rule gives those). docs/results.md, "The tenth outside audit".
"""

import argparse
import json

import numpy as np

from analysis import labelfree as lf
from analysis.effect import sized

# (families, members, df of the member noise; 0: Gaussian)
DESIGNS = [(24, 2, 0), (24, 2, 3), (24, 2, 1), (12, 2, 2), (16, 3, 3)]


def verdicts(families: int, members: int, df: int, reps: int) -> dict:
    """Deep verdicts on ``reps`` null populations of one design."""
    rng = np.random.default_rng(0)
    fam = np.repeat(np.arange(families), members)
    crosses = minority = groups = 0
    for r in range(reps):
        n = families * members
        noise = rng.standard_t(df, size=(n, 8)) if df else rng.standard_normal((n, 8))
        x = rng.standard_normal((families, 8))[fam] + 0.5 * noise
        res = lf.label_free(x, fam, n_null=199, random_state=r)
        (d,) = lf.decide([sized(res, fam.astype(str), x, None, False, np.zeros(n, int))])
        crosses += d.verdict == "crosses lineage"
        minority += d.verdict == "crosses lineage" and (d.split_rate or 0) < lf.CROSS_SPLIT_RATE
        groups += d.verdict == "groups lineages"
    return {"families": families, "members": members, "df": df, "reps": reps,
            "crosses_lineage": crosses / reps, "by_minority_rule": minority / reps, "groups_lineages": groups / reps}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    rows = [verdicts(*d, a.reps) for d in DESIGNS]
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    for r in rows:
        noise = f"t({r['df']})" if r["df"] else "Gaussian"
        print(f"{r['families']} x {r['members']}, {noise} member noise: crosses lineage {r['crosses_lineage']:.1%} "
              f"(by the minority rule {r['by_minority_rule']:.1%}), groups lineages {r['groups_lineages']:.1%}")


if __name__ == "__main__":
    main()
