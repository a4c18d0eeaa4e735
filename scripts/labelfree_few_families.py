"""The label-free answer on subsets of two and three init families of stored zoos (docs/scorecard.md,
"Two or three families").

    python scripts/labelfree_few_families.py [--lineage family] [--truth rule] [--jsonl OUT] ZOO [ZOO ...]

Each zoo is one population with at least its default fingerprints cached (``fingerprint extract``).
A zoo of four or more families is cut to three subsets: its first two families, the next two, and the
first three (in sorted name order); a zoo of two or three is taken whole. Each subset is analysed as a
report would (the default set that applies, ``embedding = "pca"``, the zoo's ``--lineage`` column) and
its label-free answer read: candidates and few-family leads (at two or three families every deep
verdict is a lead). With ``--truth COLUMN``, a subset where it takes two or more values is *planted*,
and a lead or candidate counts as right when one of its fingerprints' candidate basins has an AMI of
0.5 or more with it. Prints the counts by number of families; ``--jsonl`` writes a row per subset
(answer, leads, verdicts, AMIs). It reads the zoos and writes nothing into them.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections import Counter

import numpy as np
from sklearn.metrics import adjusted_mutual_info_score

from analysis.answer import label_free_answer
from analysis.options import FingerprintInput
from analysis.scorecard import analyze
from fingerprint import pipeline
from fingerprint.tables import model_table


def subsets(names: list[str]) -> list[list[str]]:
    """Two or three families whole; four or more: the first two, the next two, the first three."""
    return [names] if len(names) < 4 else [names[:2], names[2:4], names[:3]]


def cut(inputs: list[FingerprintInput], keep: set[str]) -> list[FingerprintInput]:
    """The fingerprints of the models in ``keep`` only (a distance fingerprint's rows and columns)."""
    out = []
    for f in inputs:
        if f.values is None:
            out.append(f)
            continue
        rows = np.asarray([i for i, m in enumerate(f.model_ids) if m in keep])
        v = np.asarray(f.values)
        out.append(FingerprintInput(f.name, v[np.ix_(rows, rows)] if f.distances else v[rows],
                                    [f.model_ids[i] for i in rows], f.meta, f.error))
    return out


def one_zoo(path: str, lineage: str, truth_col: str | None) -> list[dict]:
    zoo = pipeline.open_zoo(path, trust_code=True)
    table = model_table(zoo)
    if lineage not in table:
        return [{"zoo": path, "error": f"no column '{lineage}'"}]
    inputs = pipeline.fingerprints(zoo, pipeline.default_fingerprints(zoo))
    fam = np.asarray([str(v) for v in table[lineage]], dtype=object)
    rows = []
    for sub in subsets(sorted(set(fam.tolist()))):
        idx = np.flatnonzero(np.isin(fam, sub))
        ids = [zoo.model_ids[i] for i in idx]
        res = analyze(cut(inputs, set(ids)), {k: np.asarray(v)[idx] for k, v in table.items()},
                      pipeline.analysis_options({"lineage": lineage, "embedding": "pca"}))
        ans = label_free_answer(res)
        truth = None if truth_col not in table else np.asarray([str(v) for v in np.asarray(table[truth_col])[idx]])
        planted = truth is not None and len(set(truth.tolist())) > 1
        amis = {}
        if planted:
            where = {m: i for i, m in enumerate(ids)}
            for f in res.fingerprints:
                lf = f.label_free or {}
                basins = lf.get("candidate_basins") or {}
                if lf.get("verdict") in ("crosses lineage", "groups lineages") and isinstance(basins, dict) and basins:
                    amis[str(f.fingerprint)] = float(adjusted_mutual_info_score(
                        [truth[where[m]] for m in f.model_ids], [basins.get(m, -1) for m in f.model_ids]))
        found = [c.fingerprints for c in (ans.candidates + ans.few_family_leads)] if ans else []
        rows.append({"zoo": path, "families": sub, "n": len(ids), "planted": planted, "answer": ans.sentence if ans else None,
                     "candidates": len(ans.candidates) if ans else 0, "leads": len(ans.few_family_leads) if ans else 0,
                     "right": any(amis.get(fp, 0.0) >= 0.5 for fps in found for fp in fps), "ami": amis,
                     "verdicts": {str(f.fingerprint): (f.label_free or {}).get("verdict") for f in res.fingerprints}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoos", nargs="+")
    ap.add_argument("--lineage", default="family")
    ap.add_argument("--truth", default=None, help="the column of the planted difference, if any")
    ap.add_argument("--jsonl", default=None)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    counts: Counter = Counter()
    out = open(a.jsonl, "a") if a.jsonl else None
    for z in a.zoos:
        for r in one_zoo(z, a.lineage, a.truth):
            if out:
                out.write(json.dumps(r) + "\n")
                out.flush()
            if "error" in r:
                continue
            said = "a candidate" if r["candidates"] else "a lead" if r["leads"] else "nothing"
            kind = "planted" if r["planted"] else "not planted"
            counts[(len(r["families"]), kind, said + (", right" if r["planted"] and r["right"] else ""))] += 1
    for key in sorted(counts):
        print(f"{key[0]} families, {key[1]}: {key[2]}: {counts[key]}")


if __name__ == "__main__":
    main()
