"""False "deep" rate of the label-free verdicts on null populations (issue #20, item 4).

    python scripts/labelfree_nulls.py [--seeds 12] [--n-null 199] [--alpha 0.05] [--null rotation] [SUMMARY.json ...]

Synthetic nulls: hierarchical populations of init families with no deep split (the construction of
``tests/analysis/test_labelfree.py``: anisotropic family effects plus member noise; Gaussian,
heavy-tailed t(3), skewed log-normal, or no family effect at all), in three designs: 12 families x 4
models (the test's), 10 x 3 (the size of ``xor-cues-null``) and 8 x 3 (``digits-backdoor-null``).
Each population gets four independent "fingerprints" (10 dimensions each) decided together by
:func:`analysis.labelfree.decide`, as one report's fingerprints are, with the report's defaults
(``n_null`` = ``n_perm`` = 199, alpha 0.05). A (population, fingerprint) pair is a false positive
when its verdict is ``crosses lineage`` or ``groups lineages``. The ``pointer`` column counts the
pairs without a deep verdict whose sentence names a closest, not significant, split of the families
(``closest_groups``: raw groups p below ``EXPLORATORY_P``; docs/scorecard.md, "Closest split").

Parents (``--parents``): base models imported beside their fine-tuned children
(:func:`analysis.synthetic.parent_population`: a shift from base to fine-tune shared across families
plus a per-family part), the generation given as the scorecard derives it from ``parent_id``; the
false "deep" rate on ``parents-null`` (5 x (1 + 4), the audit's design, and 8 x (1 + 3); shift 6 and
20) and the power on ``parents-cross`` (half the children moved by 12 along one dimension), with the
same populations' children alone beside it.

Real nulls: each ``summary.json`` given (from ``fingerprint run`` on a null config) adds its rows'
``label_free_verdict``. Prints one row per design and kind, per summary, and the pooled rate with a
95% Clopper-Pearson interval. docs/results.md quotes its output.

``--null rotation``: the all-model split's rotation null (measured, not the default) instead of the
plug-in Gaussian null, to compare the two.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections import Counter
from pathlib import Path

from scipy.stats import binomtest

from analysis import labelfree as lf
from analysis.labelfree_sentences import EXPLORATORY_P, closest_groups
from analysis.synthetic import parent_population, synthetic_population

KINDS = ("null", "null-t", "null-skew", "null-flat")
DESIGNS = ((12, 4), (10, 3), (8, 3))
PARENT_DESIGNS = ((5, 4), (8, 3))  # base models x fine-tuned children each
PARENT_SHIFTS = (6.0, 20.0)
N_FP = 4


def ci(k: int, n: int) -> str:
    lo, hi = binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k}/{n} = {k / n:.3f} [{lo:.3f}, {hi:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summaries", nargs="*", type=Path, help="summary.json of fingerprint runs on null configs")
    ap.add_argument("--seeds", type=int, default=12, help="populations per design and kind")
    ap.add_argument("--n-null", type=int, default=199)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--parents", action="store_true", help="only the parents-beside-children populations")
    ap.add_argument("--null", default="plug-in", choices=["rotation", "plug-in"], help="the all-model split's null")
    args = ap.parse_args()
    lf._all_split = functools.partial(lf._all_split, null=args.null)
    if args.parents:
        parents(args)
        return

    t0 = time.time()
    print(f"synthetic nulls: {args.seeds} populations per design and kind, {N_FP} fingerprints each, "
          f"n_null {args.n_null}, alpha {args.alpha}, all-model null {args.null}")
    print(f"{'design':>8} {'kind':>10} {'pops':>5} {'pairs':>6} {'deep':>5} {'pops with deep':>15} {'pointer':>8}  verdicts")
    syn_deep = syn_pairs = syn_pops = syn_pops_deep = syn_point = syn_free = 0
    for n_fam, m in DESIGNS:
        for ki, kind in enumerate(KINDS):
            deep = pairs = pops_deep = point = 0
            verdicts: Counter = Counter()
            for s in range(args.seeds):
                seed = 10_000 * (n_fam * 10 + m) + 1000 * ki + s
                fam = None
                raw = []
                for f in range(N_FP):
                    x, fam, _ = synthetic_population(kind, seed * N_FP + f, n_fam, m)
                    raw.append(lf.label_free(x, fam, n_null=args.n_null, random_state=seed))
                res = lf.decide(raw, args.alpha)
                d = sum(r.verdict in lf.DEEP_VERDICTS for r in res)
                deep, pairs, pops_deep = deep + d, pairs + len(res), pops_deep + (d > 0)
                point += sum(closest_groups(r) is not None for r in res)
                syn_free += sum(r.verdict in ("lineage only", "no structure") for r in res)
                verdicts.update(r.verdict for r in res)
            syn_deep, syn_pairs, syn_point = syn_deep + deep, syn_pairs + pairs, syn_point + point
            syn_pops, syn_pops_deep = syn_pops + args.seeds, syn_pops_deep + pops_deep
            print(f"{n_fam:>4} x {m} {kind:>10} {args.seeds:>5} {pairs:>6} {deep:>5} {pops_deep:>15} {point:>8}  "
                  + ", ".join(f"{v} {c}" for v, c in sorted(verdicts.items())))
    print(f"synthetic: pairs {ci(syn_deep, syn_pairs)}; populations with any deep verdict "
          f"{ci(syn_pops_deep, syn_pops)}  ({time.time() - t0:.0f} s)")
    print(f"synthetic: closest-split pointer (raw groups p < {EXPLORATORY_P:g}) on pairs without a deep verdict "
          f"{ci(syn_point, syn_free)}")

    real_deep = real_pairs = real_point = real_free = 0
    for path in args.summaries:
        rows = [r for r in json.loads(path.read_text())["scorecard"] if r.get("label_free_verdict")]
        verdicts = Counter(r["label_free_verdict"] for r in rows)
        d = sum(r["label_free_verdict"] in lf.DEEP_VERDICTS for r in rows)
        real_deep, real_pairs = real_deep + d, real_pairs + len(rows)
        free = [f.get("label_free") or {} for f in json.loads(path.read_text()).get("fingerprints", [])]
        point = sum(bool(f.get("closest_groups")) for f in free)
        real_point, real_free = real_point + point, real_free + sum(f.get("verdict") in ("lineage only", "no structure") for f in free)
        print(f"{path}: {len(rows)} fingerprints, {d} deep, {point} pointers; "
              + ", ".join(f"{v} {c}" for v, c in sorted(verdicts.items())))
    if args.summaries:
        print(f"real: pairs {ci(real_deep, real_pairs)}")
        if real_free:
            print(f"real: closest-split pointer on pairs without a deep verdict {ci(real_point, real_free)}")
        print(f"pooled (synthetic + real): pairs {ci(syn_deep + real_deep, syn_pairs + real_pairs)}")


def parents(args) -> None:
    """False deep rate on parents-null and power on parents-cross, the generation given (and, for the
    power, the same populations' children alone)."""
    from sklearn.metrics import adjusted_mutual_info_score

    t0 = time.time()
    print(f"parents beside fine-tuned children: {args.seeds} populations per design and shift, {N_FP} fingerprints "
          f"each, n_null {args.n_null}, alpha {args.alpha}, all-model null {args.null}")
    tot_deep = tot_pairs = 0
    for n_fam, m in PARENT_DESIGNS:
        for shift in PARENT_SHIFTS:
            deep = pairs = 0
            verdicts: Counter = Counter()
            for s in range(args.seeds):
                seed = 50_000 + 1000 * n_fam + 10 * int(shift) + s
                raw = []
                for f in range(N_FP):
                    x, fam, gen, _ = parent_population("parents-null", seed * N_FP + f, n_fam, m, shift=shift)
                    raw.append(lf.label_free(x, fam, n_null=args.n_null, random_state=seed, generation=gen))
                res = lf.decide(raw, args.alpha)
                deep, pairs = deep + sum(r.verdict in lf.DEEP_VERDICTS for r in res), pairs + len(res)
                verdicts.update(r.verdict for r in res)
            tot_deep, tot_pairs = tot_deep + deep, tot_pairs + pairs
            print(f"null {n_fam:>2} x (1 + {m}) shift {shift:>4g}: deep {ci(deep, pairs)}; "
                  + ", ".join(f"{v} {c}" for v, c in sorted(verdicts.items())))
    print(f"null pooled: deep {ci(tot_deep, tot_pairs)}")
    for n_fam, m in PARENT_DESIGNS:
        for who in ("with parents", "children only"):
            found, amis = 0, []
            for s in range(args.seeds):
                seed = 70_000 + 1000 * n_fam + s
                x, fam, gen, label = parent_population("parents-cross", seed, n_fam, m, delta=12.0)
                if who == "children only":
                    k = gen == 1
                    x, fam, gen, label = x[k], fam[k], gen[k], label[k]
                (r,) = lf.decide([lf.label_free(x, fam, n_null=args.n_null, random_state=seed, generation=gen)],
                                 args.alpha)
                if r.verdict == "crosses lineage":
                    camp = r.candidate_basins >= 0
                    found += 1
                    amis.append(adjusted_mutual_info_score(label[camp], r.candidate_basins[camp]))
            ami = f"{sum(amis) / len(amis):.2f} (min {min(amis):.2f})" if amis else "-"
            print(f"cross {n_fam:>2} x (1 + {m}) {who:>13}: found {ci(found, args.seeds)}, candidate AMI mean {ami}")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
