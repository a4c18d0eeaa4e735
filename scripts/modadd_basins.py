"""The `modadd-basins` table of docs/results.md: clock vs pizza against two kinds of noise.

    fingerprint run modadd-basins-quick --out runs/mbq
    python scripts/modadd_basins.py runs/mbq/zoo [--fp NAME ...] [--combine A+B ...] [--json out.json]

Prints the label counts, the key_freqs values, how often two models of one init seed share a label
and a key_freqs value, then for every cached fingerprint (or the ``--fp`` ones) the scorecard twice:
with the default lineage (``init_seed``: noise AMI against the init family) and with
``--lineage key_freqs`` (noise AMI against the frequency choice), plus the AMI of each
fingerprint's clusters with key_freqs over the whole population (``alignment``). ``--combine A+B``
also scores fingerprints A and B concatenated (each block reduced and scaled to unit RMS norm, as
``fingerprint analyze --combine``), in every pass. A third pass
(``*_cp`` columns) scores the clock and pizza models only (these two passes uncalibrated: AMIs and
probe AUROCs, no intervals): the `mixed` ones are left out of the
model table, so the analysis leaves them out (nothing is stored for it); its AMI gets a 95% interval
from the same init-family bootstrap as the scorecard's (``deep_ami_ci_cp``: the clusters fixed,
whole families redrawn).

On a zoo with groups (a ``model.sweep``, e.g. two attention rates: ``modadd-basins-mixed``) the rate
is itself a cause of the algorithm, so the script adds the label counts per group, each
fingerprint's AMI with the group over every model (``ami_group_all``: does it merely separate the
groups?) and the clock-vs-pizza pass again inside each group where both occur (``within``: k, AMI,
probe AUROC, uncalibrated), and the same with every model of a group and the three-valued label
(``within_all``: e.g. pizza vs mixed at a rate that gives no clock).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np

from analysis import metrics as mt
from analysis.resampling import family_bootstrap
from analysis.scorecard import analyze
from fingerprint.pipeline import inputs_for, open_zoo, options_for, scorecard
from fingerprint.tables import model_table


def same_init_agreement(col: np.ndarray, init: np.ndarray) -> tuple[float, float]:
    """Fraction of same-init pairs with equal values, and of all pairs."""
    pairs = list(combinations(range(len(col)), 2))
    same = [col[i] == col[j] for i, j in pairs if init[i] == init[j]]
    every = [col[i] == col[j] for i, j in pairs]
    return float(np.mean(same)) if same else float("nan"), float(np.mean(every))


def within_groups(label: np.ndarray, group: np.ndarray, labels: tuple[str, ...] | None = ("clock", "pizza")
                  ) -> dict[str, np.ndarray]:
    """``{group: mask}`` of each group's models with one of ``labels`` (None: every model), for the
    groups in which at least two of them occur (a group of one label has nothing to separate)."""
    out = {}
    for g in sorted(set(group.tolist())):
        mask = (group == g) & (np.isin(label, labels) if labels else True)
        if len(set(label[mask].tolist())) >= 2:
            out[str(g)] = mask
    return out


def cp_interval(res, table: dict, keep: np.ndarray) -> list[float] | None:
    """95% init-family bootstrap interval of the AMI of ``res``'s clusters (fixed) with the label, on
    the models ``keep`` selects (the scorecard's ``deep_ami_ci``, for an uncalibrated pass)."""
    if not res.clusters or res.label_values is None:
        return None
    pos = {m: i for i, m in enumerate(np.asarray(table["model_id"])[keep])}
    family = np.asarray([str(x) for x in np.asarray(table["init_seed"])[keep]])[[pos[m] for m in res.model_ids]]
    cc, lc = mt.label_codes(np.asarray(res.clusters)), mt.label_codes(np.asarray(res.label_values))
    ci = family_bootstrap(lambda rows, _d: mt.ami_codes(cc[rows], lc[rows]), family, 1000, 0)
    return None if ci is None else [round(float(v), 3) for v in ci]


def r(v):
    return None if v is None else round(float(v), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo", type=Path)
    ap.add_argument("--fp", action="append", default=None, help="fingerprints (default: every cached one)")
    ap.add_argument("--combine", action="append", default=None, help="also score A+B+... concatenated (repeatable)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    zoo = open_zoo(args.zoo)
    m = zoo.models
    label = np.asarray([str(x) for x in m["deep_label"]])
    freqs = np.asarray([str(x) for x in m["key_freqs"]])
    init = np.asarray(m["init_seed"])
    out: dict = {"n": len(label), "labels": dict(Counter(label.tolist())), "key_freqs": dict(Counter(freqs.tolist())),
                 "same_init_label": same_init_agreement(label, init), "same_init_key_freqs": same_init_agreement(freqs, init)}
    group = np.asarray([str(x) for x in m["group"]]) if "group" in m.names() else None
    grouped = group is not None and len(set(group.tolist())) > 1  # several groups: the per-group passes too
    if grouped:
        out["labels_by_group"] = {g: dict(Counter(label[group == g].tolist())) for g in sorted(set(group.tolist()))}
    print(json.dumps(out))
    combine = [c.split("+") for c in args.combine] if args.combine else None
    by_init = scorecard(zoo, args.fp, combine=combine)
    by_freq = scorecard(zoo, args.fp, lineage="key_freqs", calibrate=False, combine=combine)  # AMIs only: no intervals or p-values
    table = model_table(zoo)
    keep = np.asarray([str(x) != "mixed" for x in table["deep_label"]])
    opts = options_for(zoo, calibrate=False, combine=combine)
    inputs = inputs_for(zoo, args.fp, opts.label)
    cp = analyze(inputs, {k: np.asarray(v)[keep] for k, v in table.items()}, opts)
    within: dict = {"within": {}, "within_all": {}}
    if grouped:
        tlabel, tgroup = (np.asarray([str(x) for x in table[c]]) for c in ("deep_label", "group"))
        for name, labels in (("within", ("clock", "pizza")), ("within_all", None)):
            for g, mask in within_groups(tlabel, tgroup, labels).items():
                within[name][g] = (dict(Counter(tlabel[mask].tolist())),
                                   analyze(inputs, {k: np.asarray(v)[mask] for k, v in table.items()}, opts))
    rows = []
    for a in by_init.scorecard:
        f = by_init.fingerprint(a.fingerprint)
        b = next(x for x in by_freq.scorecard if x.fingerprint == a.fingerprint)
        fb = by_freq.fingerprint(a.fingerprint)
        c = next(x for x in cp.scorecard if x.fingerprint == a.fingerprint)
        c_ci = cp_interval(cp.fingerprint(a.fingerprint), table, keep)
        rows.append({"fingerprint": a.fingerprint, "k": a.n_clusters, "stability": r(a.stability), "deep_ami": r(a.deep_ami),
                     "deep_ami_ci": a.deep_ami_ci, "probe_auroc": r(a.probe_auroc), "noise_ami_init": r(a.noise_ami),
                     "noise_ami_key_freqs": r(b.noise_ami), "ami_key_freqs_all": r(fb.alignment.get("key_freqs")),
                     "ami_init_all": r(f.alignment.get("init_seed")), "verdict": a.verdict, "verdict_key_freqs": b.verdict,
                     "k_cp": c.n_clusters, "deep_ami_cp": r(c.deep_ami), "deep_ami_ci_cp": c.deep_ami_ci or c_ci,
                     "probe_auroc_cp": r(c.probe_auroc), "noise_ami_init_cp": r(c.noise_ami), "verdict_cp": c.verdict,
                     "error": a.error})
        if grouped:
            rows[-1]["ami_group_all"] = r(f.alignment.get("group"))
            for name, passes in within.items():
                rows[-1][name] = {}
                for g, (counts, res) in passes.items():
                    w = next(x for x in res.scorecard if x.fingerprint == a.fingerprint)
                    rows[-1][name][g] = {"labels": counts, "k": w.n_clusters, "ami": r(w.deep_ami), "probe_auroc": r(w.probe_auroc)}
        print(json.dumps(rows[-1]))
    if args.json:
        args.json.write_text(json.dumps({**out, "fingerprints": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
