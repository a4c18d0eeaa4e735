"""Model-output fingerprints standardised column by column vs centred only, per fingerprint, on zoos.

usage: python scripts/scale_compare.py POPS [--lineage family] [--json]

``POPS``: a text file, one population per line, ``kind name zoo_path [truth_column]`` (``kind``:
``null`` or ``plant``; the truth column, when given, scores the clusters). For each cached
``probe-outputs``, ``ood-outputs``, ``recombined-outputs`` and ``anomalous-inputs`` fingerprint,
both ways (``analysis.reduce.reduce_features`` with and without ``standardize``): the clusters'
``k`` and AMI with the truth and with the families, and the label-free tests' raw p-values (199
replicates, before any correction). Prints the counts per kind (clusters matching the truth, split
and groups tests at p <= 0.01). docs/results.md, "Centred model outputs".
"""

import argparse
import collections
import json

import numpy as np

from analysis import labelfree as lf
from analysis.clustering import BasinClusterer
from analysis.metrics import ami
from analysis.reduce import reduce_features
from fingerprint import pipeline

OUTPUTS = ("probe-outputs", "ood-outputs", "recombined-outputs", "anomalous-inputs")


def compare(kind: str, name: str, path: str, truth_col: str | None, lineage: str) -> list[dict]:
    """One row per output fingerprint of the zoo at ``path``: both scalings' clusters and raw p-values."""
    zoo = pipeline.open_zoo(path)
    ids_all = [str(m) for m in zoo.model_ids]
    fam_of = dict(zip(ids_all, [str(v) for v in zoo.models[lineage]]))
    truth = dict(zip(ids_all, [str(v) for v in zoo.models[truth_col]])) if truth_col else None
    rows = []
    for fp in pipeline.cached_fingerprints(zoo):
        if str(fp.name).split(":")[0].split("@")[0] not in OUTPUTS or fp.values is None:
            continue
        x = np.asarray(fp.values, dtype=np.float64).reshape(len(fp.values), -1)
        ids = [str(i) for i in fp.model_ids]
        fam = np.asarray([fam_of[i] for i in ids])
        row = {"kind": kind, "population": name, "fingerprint": str(fp.name)}
        for std in (True, False):
            clusters = BasinClusterer(standardize=std).fit(x).labels_
            res = lf.label_free(reduce_features(x, 10, 0, std), fam, 199, 0)
            row["standardised" if std else "centred"] = {
                "k": int(len(np.unique(clusters))),
                "ami_truth": None if truth is None else ami(list(clusters), [truth[i] for i in ids]),
                "ami_family": ami(list(clusters), list(fam)),
                "p_split": res.p_split, "p_groups": res.p_groups, "p_lineage": res.p_lineage}
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pops")
    ap.add_argument("--lineage", default="family")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = []
    for line in open(a.pops):
        parts = line.split()
        if len(parts) >= 3:
            rows += compare(parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else None, a.lineage)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    count = collections.Counter()
    for r in rows:
        for way in ("standardised", "centred"):
            d = r[way]
            count[r["kind"], way, "n"] += 1
            count[r["kind"], way, "ami_truth >= 0.9"] += d["ami_truth"] is not None and d["ami_truth"] >= 0.9
            count[r["kind"], way, "split p <= 0.01"] += d["p_split"] is not None and d["p_split"] <= 0.01
            count[r["kind"], way, "groups p <= 0.01"] += d["p_groups"] is not None and d["p_groups"] <= 0.01
    for kind in sorted({r["kind"] for r in rows}):
        for way in ("standardised", "centred"):
            stats = ", ".join(f"{k} {v}" for (kk, w, k), v in count.items() if kk == kind and w == way and k != "n")
            print(f"{kind} {way}: {count[kind, way, 'n']} fingerprints; {stats}")


if __name__ == "__main__":
    main()
