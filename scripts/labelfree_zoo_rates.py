"""Deep-verdict rate of the label-free tests per fingerprint over many stored null zoos.

    python scripts/labelfree_zoo_rates.py [--lineage family] [--n-perm 199] [--jsonl OUT] ZOO [ZOO ...]

Each zoo is one population (e.g. one training of F init families x M data orders, imported with
``fingerprint import`` and extracted with the default set). For every cached fingerprint the script
builds the coordinates the scorecard runs the label-free tests on (PCA of the standardised features,
classical MDS of distances: :func:`analysis.reduce.coordinates` with the report's defaults), runs
:func:`analysis.labelfree.label_free` on them with the zoo's lineage column and the scorecard's strata,
and :func:`analysis.labelfree.decide` across the zoo's fingerprints, as one report does. It reads the
zoo and writes nothing into it. Prints, per fingerprint, the deep verdicts (``crosses lineage`` /
``groups lineages``) over the zoos with a 95% Clopper-Pearson interval, the share of raw p-values at
or below 0.05 of each deep test, and which statistic gave each deep verdict (the centroid groups
jointly or along one direction, the split of all models, the within-family split). Used for
docs/results.md, "Real null populations at four and six families".
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.stats import beta

from analysis import labelfree as lf
from analysis import metrics as mt
from analysis.reduce import as_distance, as_floats, coordinates
from analysis.scorecard import STRATA
from fingerprint.pipeline import cached_fingerprints
from fingerprint.tables import model_table
from fingerprint.zoo import Zoo


def zoo_rows(path: str, lineage: str, n_perm: int) -> list[dict]:
    """One row per cached fingerprint of the zoo at ``path``: its label-free verdict and raw p-values."""
    zoo = Zoo.open(path)
    table = model_table(zoo)
    index = {m: i for i, m in enumerate(table["model_id"])}
    names, res = [], []
    for fp in sorted(cached_fingerprints(zoo), key=lambda f: f.name):
        if fp.values is None:
            continue
        values = as_floats(fp.values)
        rows = np.asarray([index[m] for m in fp.model_ids])
        col = lambda c: np.asarray(table[c], dtype=object)[rows]  # noqa: E731
        coords = coordinates(values, as_distance(values, fp.distances), 10, 0, bool(fp.meta.get("standardize", True)))
        strata = [col(c) for c in STRATA if c in table and c != lineage]
        parents = None
        if "parent_id" in table and any(str(p) for p in col("parent_id")):
            parents = mt.root_family(list(fp.model_ids), col("parent_id"))
        res.append(lf.label_free(coords, col(lineage), n_perm, 0, 8, strata, parents))
        names.append(fp.name)
    out = []
    for name, r in zip(names, lf.decide(res)):
        deep = r.verdict in lf.DEEP_VERDICTS
        by = None
        if r.verdict == "crosses lineage":
            by = "within-family split" if r.split_within else "all-model split"
        elif deep:  # groups lineages: from the split (families whole) or from the centroid groups
            by = "all-model split" if (r.split_min_families or 0) >= 2 and r.p_split <= r.p_groups else \
                ("groups, one direction" if r.groups_axis is not None else "groups, joint")
        out.append(dict(zoo=path, fp=name, n=r.n_models, families=r.n_families, verdict=r.verdict, q=r.q, by=by,
                        p_lineage=r.p_lineage, p_groups=r.p_groups, p_split=r.p_split,
                        family_groups=r.family_groups if by and by.startswith("groups") else None))
    return out


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoos", nargs="+")
    ap.add_argument("--lineage", default="family")
    ap.add_argument("--n-perm", type=int, default=199)
    ap.add_argument("--jsonl", help="also write every row here")
    a = ap.parse_args()
    rows = [r for z in a.zoos for r in zoo_rows(z, a.lineage, a.n_perm)]
    if a.jsonl:
        Path(a.jsonl).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(a.zoos)} zoos")
    for fp in sorted({r["fp"] for r in rows}) + ["all"]:
        sub = [r for r in rows if fp in ("all", r["fp"])]
        k = sum(r["verdict"] in lf.DEEP_VERDICTS for r in sub)
        lo, hi = clopper_pearson(k, len(sub))
        raw = {t: np.mean([r[f"p_{t}"] <= 0.05 for r in sub if r[f"p_{t}"] is not None]) for t in ("groups", "split")}
        by = dict(Counter(r["by"] for r in sub if r["by"]))
        print(f"{fp:20s} deep {k:3d}/{len(sub):3d} = {k / len(sub):.3f} [{lo:.3f}, {hi:.3f}]   raw p <= 0.05: "
              f"groups {raw['groups']:.3f}, split {raw['split']:.3f}   {by}")


if __name__ == "__main__":
    main()
