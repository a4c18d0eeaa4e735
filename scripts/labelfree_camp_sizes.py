"""How small a camp of a large population the label-free tests find (docs/scorecard.md, "How small a camp").

usage: python scripts/labelfree_camp_sizes.py [--families 200] [--sizes 4 6 8 10 12 20 30] [--sds 50 25]
       [--seeds 3] [--json]

Synthetic populations of ``families`` init families of 4 models in 6 dimensions: a family effect (SD 1) and member
noise (SD 0.5); one model of each of the first ``k`` families moved along the first axis by ``sds`` within-family
SDs (a camp of ``k`` models, each beside relatives: a difference drawn per model, such as a rare backdoor). Each goes
through the label-free tests, their sizes and the decision as one fingerprint (199 null replicates). Per camp size
and shift: the verdicts, and the candidate basins' AMI with the camp (``None``: no candidate).
"""

import argparse
import json

import numpy as np
from sklearn.metrics import adjusted_mutual_info_score

from analysis import labelfree as lf
from analysis.effect import sized

MEMBER_SD = 0.5


def found(families: int, k: int, sds: float, seed: int) -> tuple[str, float | None]:
    """The verdict and the candidate basins' AMI with the planted camp of one population."""
    rng = np.random.default_rng(seed)
    fam = np.repeat(np.arange(families), 4)
    n = len(fam)
    x = rng.standard_normal((families, 6))[fam] + MEMBER_SD * rng.standard_normal((n, 6))
    moved = np.arange(0, 4 * k, 4)
    x[moved, 0] += sds * MEMBER_SD
    truth = np.zeros(n, int)
    truth[moved] = 1
    res = lf.label_free(x, fam, n_null=199, random_state=seed)
    (d,) = lf.decide([sized(res, fam.astype(str), x, None, False, np.zeros(n, int))])
    ami = None if d.candidate_basins is None else round(float(adjusted_mutual_info_score(truth, d.candidate_basins)), 2)
    return d.verdict, ami


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 6, 8, 10, 12, 20, 30])
    ap.add_argument("--sds", type=float, nargs="+", default=[50.0, 25.0], help="the camp's shift in within-family SDs")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    rows = [{"models": 4 * a.families, "camp": k, "sds": s,
             "runs": [dict(zip(("verdict", "ami"), found(a.families, k, s, seed))) for seed in range(a.seeds)]}
            for s in a.sds for k in a.sizes]
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    for r in rows:
        hits = sum(x["ami"] == 1.0 for x in r["runs"])
        print(f"{r['models']} models, a camp of {r['camp']} moved {r['sds']:g} SDs: the candidate exactly in {hits} of "
              f"{len(r['runs'])} ({', '.join(x['verdict'] for x in r['runs'])})")


if __name__ == "__main__":
    main()
