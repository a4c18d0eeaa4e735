"""Calibration and decisions: family-level intervals and p-values of a fingerprint's scores, and
the verdicts of all fingerprints at once (Benjamini-Hochberg across the report).

:func:`verdict` is the rule of ``docs/scorecard.md`` for one fingerprint; :func:`calibrate` its
uncertainty; :func:`decide` sets ``verdict``, ``reason``, ``label_free`` and ``significant`` on every
:class:`~analysis.results.FingerprintResult` of a report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis import labelfree as lf
from analysis import metrics as mt
from analysis import resampling as rs
from analysis.effect import SizedLabelFree
from analysis.intervals import auroc_interval, cv_widen
from analysis.labelfree_sentences import (
    apart_text,
    closest_groups,
    cutting,
    effect_text,
    related_counts,
)
from analysis.options import AnalysisOptions
from analysis.probe_permutation import probe_permutation_p
from analysis.results import FingerprintResult, jsonable
from analysis.verdicts import FLOOR_REASON, PROBE_FLOOR_REASON, Verdict

NO_TRUTH = Verdict.NO_TRUTH.value
FAILED = Verdict.FAILED.value
FLOOR_TIE = rs.TIE  # a null AMI within this of the observed one ties it (the same partition, recomputed)


def probe_only(verdict: str | None, deep_ami: float | None, deep_q: float | None, opts: AnalysisOptions) -> bool:
    """A deep verdict whose basins do not follow the label significantly: the probe alone made it (the
    seventh audit read `deep` beside `deep AMI 0.00` as strong support; the terminal marks it
    "(probe)", and since an outside audit, 73, the report and ``summary.json`` too)."""
    basins = deep_ami is not None and deep_ami >= opts.deep_threshold and (deep_q is None or deep_q <= opts.alpha)
    return verdict in ("tracks deep differences", "tracks both") and not basins


def verdict(deep_ami: float | None, noise_ami: float | None, probe_auroc: float | None, binary: bool,
            opts: AnalysisOptions, has_label: bool, deep_q: float | None = None, noise_q: float | None = None,
            probe_ci: tuple[float, float] | None = None, lineage_auc: float | None = None,
            lineage_q: float | None = None, floor: Floor | None = None, probe_q: float | None = None,
            probe_p: float | None = None) -> tuple[str, str]:
    """The verdict and the reason for it (the rules of ``docs/scorecard.md``). A score counts only
    when it is significant: deep and noise AMI need their Benjamini-Hochberg-adjusted family
    permutation p-values ``deep_q`` / ``noise_q`` at or below ``opts.alpha`` (``None``: untested),
    the probe AUROC a family-bootstrap interval ``probe_ci`` above 0.5 and its adjusted
    family-permutation p-value ``probe_q`` at or below alpha (:func:`probe_permutation_p`). The probe counts for any
    label (binary: AUROC; more classes: macro one-vs-rest): a label a linear probe reads off the
    fingerprint is a deep difference it tracks, even where the clusters do not show it (``binary``
    is kept for callers; it no longer changes the rule). Identifying lineage (``lineage_auc`` at or
    above ``opts.lineage_threshold``, significant) is noise evidence unless the basins themselves
    follow the label significantly and not the families: then the basins are clean and the
    identification is only named in the reason.

    A deep AMI at or above the threshold whose p-value is at the permutation ``floor`` (no
    relabelling beat it, only ties: the smallest p the family permutation can give, e.g. 1/32 with
    6 families of one model of each label) and not significant after the correction is not
    evidence of nothing: the reason names the floor, and without other evidence the verdict is
    ``insufficient: N families`` (or ``insufficient: N permutations`` where ``--n-perm`` is the limit)."""
    if not has_label:
        return NO_TRUTH, "no ground-truth label to score against"
    deep_parts, weak = [], []
    clean_basins = False  # the basins follow the label (significantly) and not the families
    limited = None  # the basins match the label, but the permutation test cannot reach alpha: why
    floor_basins = False  # the basins match the label at the permutation floor: clean or not cannot be told
    basins_txt = ": linearly decodable, though the basins do not separate it"
    if deep_ami is not None and deep_ami >= opts.deep_threshold:
        if deep_q is None or deep_q <= opts.alpha:
            clean_basins = True
            deep_parts.append(f"deep AMI {deep_ami:.2f} >= {opts.deep_threshold:g}" + ("" if deep_q is None else f" (q {deep_q:.3g})"))
        elif floor is not None and floor.at_floor:
            limited = floor.text(deep_ami, deep_q, opts.alpha)
            floor_basins = True
            basins_txt = f"; {limited}"
        else:
            weak.append(f"deep AMI {deep_ami:.2f} not significant (q {deep_q:.3g} > {opts.alpha:g})")
            basins_txt = f"; the basins follow the label (deep AMI {deep_ami:.2f}) but not significantly (q {deep_q:.3g} > {opts.alpha:g})"
    if probe_auroc is not None and probe_auroc >= opts.auroc_threshold:  # binary, or macro one-vs-rest
        if probe_ci is not None and probe_ci[0] <= 0.5:
            weak.append(f"probe AUROC {probe_auroc:.2f} whose interval reaches 0.5")
        elif probe_q is None or probe_q <= opts.alpha:
            clusters_too = bool(deep_parts)
            deep_parts.append(f"probe AUROC {probe_auroc:.2f} >= {opts.auroc_threshold:g}"
                              + ("" if probe_q is None else f" (q {probe_q:.3g})") + ("" if clusters_too else basins_txt))
        elif limited is None and floor is not None and floor.by == "families" and floor.reaches(probe_p):
            limited = floor.probe_text(probe_auroc, probe_p, probe_q, opts.alpha)  # the permutation test at its floor
        else:  # the interval passed, the permutation test did not
            weak.append(f"probe AUROC {probe_auroc:.2f} not significant when the label moves between families "
                        f"(q {probe_q:.3g} > {opts.alpha:g})")
    noise = noise_ami is not None and noise_ami >= opts.noise_threshold and (noise_q is None or noise_q <= opts.alpha)
    if noise_ami is not None and noise_ami >= opts.noise_threshold and not noise:
        weak.append(f"noise AMI {noise_ami:.2f} not significant (q {noise_q:.3g})")
    noise_txt = f"noise AMI {noise_ami:.2f} {'>=' if noise_ami >= opts.noise_threshold else '<'} {opts.noise_threshold:g}" \
        if noise_ami is not None else "noise AMI n/a"
    if lineage_auc is not None:
        high = lineage_auc >= opts.lineage_threshold
        ident = high and (lineage_q is None or lineage_q <= opts.alpha)
        clean_basins = clean_basins and not noise
        # basins that match the label at the permutation floor may be clean or not: that cannot be told, so
        # identifying lineage does not decide noise there (an outside audit, 89: a goal planted family by family at
        # 6 families read "tracks initialization noise" with its clusters the goal exactly and noise AMI 0.00)
        noise = noise or (ident and not clean_basins and not floor_basins)
        noise_txt += f"; identifies lineage: AUC {lineage_auc:.2f} {'>=' if high else '<'} {opts.lineage_threshold:g}" \
            + ("" if lineage_q is None else f" (q {lineage_q:.3g})") \
            + (" within basins that follow the label, not the families" if ident and clean_basins else "")
        if high and not ident:
            weak.append(f"lineage AUC {lineage_auc:.2f} not significant (q {lineage_q:.3g})")
    d = f"deep AMI {deep_ami:.2f} {'>=' if deep_ami >= opts.deep_threshold else '<'} {opts.deep_threshold:g}" \
        if deep_ami is not None else "deep AMI n/a"
    if deep_parts and noise:
        return "tracks both", f"{' and '.join(deep_parts)}; {noise_txt}"
    if deep_parts:
        return "tracks deep differences", f"{' and '.join(deep_parts)}; {noise_txt}"
    if noise:
        return "tracks initialization noise", "; ".join([d, noise_txt, *weak, *([limited] if limited else [])])
    if limited:
        return f"insufficient: {floor.limit}", "; ".join([limited, noise_txt, *weak, floor.advice])
    return "uninformative", "; ".join([d, noise_txt, *weak])


@dataclass(frozen=True)
class Floor:
    """The floor of a deep AMI's family permutation p-value (:func:`analysis.resampling.family_permutation_floor`,
    or ``1 / (n_perm + 1)`` where that is higher): ``p_floor``, what sets it (``by``: ``families`` or
    ``permutations``), whether the observed AMI is at it (``at_floor``: no relabelling beat it),
    ``p`` the p-value reached, and the counts the sentences name."""

    p_floor: float
    by: str
    at_floor: bool
    p: float
    n_families: int
    n_perm: int

    @property
    def limit(self) -> str:
        return f"{self.n_families} families" if self.by == "families" else f"{self.n_perm} permutations"

    @property
    def advice(self) -> str:
        return "more init families would decide" if self.by == "families" else "more permutations (--n-perm) would decide"

    @property
    def how(self) -> str:
        return (f"with {self.n_families} families the family permutation cannot give p below {self.p_floor:.2g}"
                if self.by == "families" else f"with {self.n_perm} permutations p cannot go below {self.p_floor:.2g}")

    def text(self, deep_ami: float, deep_q: float, alpha: float) -> str:
        return f"{FLOOR_REASON} (deep AMI {deep_ami:.2f}), but {self.how} (p {self.p:.2g}, q {deep_q:.2g} > {alpha:g})"

    def probe_text(self, auroc: float, p: float, q: float, alpha: float) -> str:
        return f"{PROBE_FLOOR_REASON} (probe AUROC {auroc:.2f}), but {self.how} (p {p:.2g}, q {q:.2g} > {alpha:g})"

    def reaches(self, p: float | None) -> bool:
        """Is ``p`` the floor, up to its Monte Carlo error (:func:`near_floor`)?"""
        return p is not None and p <= near_floor(self.p_floor, self.n_perm)

    @classmethod
    def of(cls, calibration: dict[str, Any], n_perm: int) -> Floor | None:
        c = calibration
        if c.get("deep_ami_p_floor") is None or c.get("deep_ami_p") is None:
            return None
        return cls(c["deep_ami_p_floor"], c["deep_ami_floor_by"], bool(c["deep_ami_at_floor"]), c["deep_ami_p"],
                   int(c["n_families"]), n_perm)


def near_floor(p_floor: float, n_perm: int) -> float:
    """The largest Monte Carlo p-value (``n_perm`` permutations) that still reads as the exact floor
    ``p_floor``: within three binomial standard errors, plus one permutation's share."""
    return p_floor + 3 * np.sqrt(p_floor / n_perm) + 1.0 / (n_perm + 1)


def calibrate(clusters: np.ndarray, label: np.ndarray | None, lineage: np.ndarray | None, family: np.ndarray,
               oof: tuple | None, scores: dict[str, Any], opts: AnalysisOptions, nn_hits: np.ndarray | None = None,
               replicates: list | None = None, probe: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """95% intervals from a bootstrap over init families and one-sided p-values from permutations
    at the family level (docs/scorecard.md, "Uncertainty"): deep AMI (labels move between families
    as whole blocks), noise AMI (members move across families inside each true basin: the null that
    the family does not matter), the probe AUROC (its out-of-fold probabilities, folds grouped by
    family, resampled by family), the lineage 1-NN rate (each queried model's neighbour fixed,
    ``nn_hits [n]``, NaN where not queried) and the bootstrap stability (the ``replicates``'
    clusterings fixed, compared on the models of each family sample). With ``probe``, the probe's
    coordinates ``[n, c]`` and fold groups ``[n]``, the probe's readability also gets a family
    permutation p-value, ``probe_auroc_p`` (:func:`probe_permutation_p`)."""
    out: dict[str, Any] = {}
    seed, nb, npm = opts.seed, opts.n_family_boot, opts.n_perm
    # the replicates index the whole population (a family sample below is a subset of its rows)
    stab = None if not replicates else mt.replicate_agreement(replicates, len(clusters), random_state=seed)
    rows = lf.family_sample(family, lf.MAX_MODELS, seed)
    if rows is not None:  # a large population: on a random sample of whole families (docs/scorecard.md)
        clusters, family = clusters[rows], family[rows]
        nn_hits = None if nn_hits is None else nn_hits[rows]
        label = None if label is None else label[rows]
        lineage = None if lineage is None else lineage[rows]
        oof = None if oof is None else (oof[0], oof[1][rows], oof[2][rows], oof[3])
        probe = None if probe is None else (probe[0][rows], probe[1][rows])
        out["sampled"] = len(rows)
    # every statistic is computed for all bootstrap samples (permutations) at once, from the same
    # draws as the per-sample loops of analysis.resampling (docs/scorecard.md, "Uncertainty")
    fcodes, fnames = rs.family_codes(family)
    nf = len(fnames)
    boot = lambda stat: rs.family_bootstrap_batch(stat, family, nb, seed)  # noqa: E731
    counts_of = lambda picks: rs.family_counts(picks, nf)  # noqa: E731
    weights_of = lambda picks: counts_of(picks)[:, fcodes]  # noqa: E731 - each model's count in each sample
    cc = mt.label_codes(clusters)  # coded once: the samples take subsets of the codes
    kc = int(cc.max(initial=-1)) + 1
    if label is not None and scores.get("deep_ami") is not None:
        lc = mt.label_codes(label)
        kl = int(lc.max()) + 1
        deep_ami = mt.ami_codes_by_family_counts(cc, lc, fcodes, nf)
        out["deep_ami_ci"] = boot(lambda picks, _c: deep_ami(counts_of(picks)))
        obs = mt.ami_codes(cc, lc)
        if obs is not None:
            perm = rs.family_permutations(family, npm, seed)  # perm[p, i]: the model whose label model i takes
            null = mt.ami_codes_tables(_tables(lc[perm], cc, kl, kc))
            out["deep_ami_p"] = rs.permutation_p(obs, null)  # a NaN (undefined) null value never reaches obs
            # the smallest p these permutations can give (a perfect match ties the relabellings that
            # keep the label's partition), and whether obs is there: no relabelling beat it, only ties
            exact, is_exact = rs.family_permutation_floor_exact(label, family)
            out["deep_ami_p_floor"] = max(exact, 1.0 / (npm + 1))
            out["deep_ami_floor_by"] = "families" if exact >= 1.0 / (npm + 1) else "permutations"
            # ... within the Monte Carlo error of the floor: a statistic every relabelling ties (clusters that
            # are the families, a label constant in each: AMI the same for all) has p 1, no floor to speak of
            out["deep_ami_at_floor"] = bool(not np.any(np.asarray(null, dtype=np.float64) > obs + FLOOR_TIE)
                                            and out["deep_ami_p"] <= near_floor(out["deep_ami_p_floor"], npm))
            if is_exact and obs >= 1.0 - FLOOR_TIE:  # a perfect match: exactly the relabellings that keep the
                out["deep_ami_p"] = exact  # partition reach it, so the floor is its exact p (no Monte Carlo error)
        else:
            out["deep_ami_p"] = None
    if oof is not None:
        _, y, prob, folds = oof
        # Newcombe's interval at the families' effective number of models, widened for the folds'
        # overlap as the forecast's accuracy is: a bootstrap of a perfect probe read [1, 1]
        out["probe_auroc_ci"] = auroc_interval(y, prob, family, inflate=cv_widen(folds) ** 2)
        if probe is not None:
            out["probe_auroc_p"] = probe_permutation_p(probe[0], y, family, probe[1], npm, seed)
    if lineage is not None and scores.get("noise_ami") is not None:
        basins = label
        bcodes = np.zeros(len(clusters), int) if basins is None else mt.label_codes(basins)  # basins in sorted order
        out["noise_ami_ci"] = boot(lambda picks, _c: _noise_boot(picks, fcodes, nf, cc, kc, bcodes))
        obs = mt.within_basin_ami(clusters, lineage, basins)[0]
        if obs is not None:
            perm = rs.member_permutations(len(clusters), basins, npm, seed)  # the family of model perm[p, i]
            lcodes = rs.family_codes(lineage)[0]
            null = mt.within_basin_ami_tables([_tables(lcodes[perm][:, m], cc[m], int(lcodes.max()) + 1, kc)
                                               for m in (bcodes == b for b in range(int(bcodes.max()) + 1))])
            out["noise_ami_p"] = rs.permutation_p(obs, null)  # a NaN (undefined) null value never reaches obs
        else:
            out["noise_ami_p"] = None
    if nn_hits is not None and np.isfinite(nn_hits).any():
        hit = np.isfinite(nn_hits)
        sums = np.bincount(fcodes, weights=np.where(hit, nn_hits, 0.0), minlength=nf)
        seen = np.bincount(fcodes, weights=hit.astype(np.float64), minlength=nf)

        def nn_rate(picks, _c):
            k = counts_of(picks).astype(np.float64)
            num, den = k @ sums, k @ seen  # integer sums: the same as the mean of each sample's hits
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(den > 0, num / den, np.nan)

        out["lineage_nn_ci"] = boot(nn_rate)
    if stab is not None:
        def stab_rate(picks, _c):  # the replicates index the population; a family sample is its rows
            return stab.of_weights(weights_of(picks), None if rows is None else rows)

        out["stability_ci"] = boot(stab_rate)
    return out


def _tables(row_codes: np.ndarray, col_codes: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """Contingency tables ``[B, n_rows, n_cols]`` of each sample's row codes ``[B, m]`` against the
    fixed column codes ``[m]``: one ``bincount`` for all samples."""
    bsz = len(row_codes)
    flat = (np.arange(bsz)[:, None] * (n_rows * n_cols) + row_codes * n_cols + col_codes[None, :]).ravel()
    return np.bincount(flat, minlength=bsz * n_rows * n_cols).reshape(bsz, n_rows, n_cols)


def _noise_boot(picks: np.ndarray, fcodes: np.ndarray, nf: int, cc: np.ndarray, kc: int, bcodes: np.ndarray) -> np.ndarray:
    """The noise AMI of each bootstrap sample (``picks [B, nf]``): inside each true basin, the draws
    (a family drawn twice is two families) against the clusters. A draw's row of the basin's table is
    its family's; the rows are put in the order of the draw numbers as strings, as
    :func:`analysis.metrics.within_basin_ami` codes them."""
    order = np.asarray(sorted(range(picks.shape[1]), key=str))
    picks = picks[:, order]
    tables = []
    for b in range(int(bcodes.max()) + 1):
        m = bcodes == b
        fam_tab = np.bincount(fcodes[m] * kc + cc[m], minlength=nf * kc).reshape(nf, kc)
        tables.append(fam_tab[picks])  # [B, draws, clusters]
    return mt.within_basin_ami_tables(tables)


def _decided(results: list[tuple[FingerprintResult, lf.LabelFreeResult | None]]) -> list[int]:
    """Where in ``results`` the analysed (not failed) ones are, which :func:`decide` decides together."""
    return [j for j, (r, _) in enumerate(results) if r.verdict != FAILED and r.analysed]


def more_replicates(results: list[tuple[FingerprintResult, lf.LabelFreeResult | None]], opts: AnalysisOptions
                    ) -> dict[int, int]:
    """``{index into results: null replicates}`` for the fingerprints whose label-free deep test sits
    at its floor unconfirmed by :func:`decide`'s correction (:func:`analysis.labelfree.replicates_to_decide`):
    their label-free tests drawn again with that many replicates, they are decided on p-values that can go low enough."""
    free = [j for j in _decided(results) if results[j][1] is not None]
    return {free[i]: n for i, n in lf.replicates_to_decide([results[j][1] for j in free], opts.alpha).items()}


def decide(results: list[tuple[FingerprintResult, lf.LabelFreeResult | None]], opts: AnalysisOptions) -> None:
    """Verdicts for all fingerprints at once (each with its raw label-free tests): the labelled ones
    need their p-values significant after a Benjamini-Hochberg correction across the report's
    fingerprints (deep and noise AMIs and lineage AUCs together); the label-free ones come from
    :func:`analysis.labelfree.decide` over the same fingerprints. Sets ``verdict``, ``reason``,
    ``label_free`` and ``significant`` of the analysed results (and ``*_q`` in their calibration)."""
    from scipy.stats import false_discovery_control

    ok = [results[j] for j in _decided(results)]
    tests = [(r, k) for r, _ in ok for k in ("deep_ami_p", "noise_ami_p", "lineage_auc_p", "probe_auroc_p")
             if r.calibration.get(k) is not None]
    if tests:
        qs = false_discovery_control([r.calibration[k] for r, k in tests], method="bh")
        for (r, k), q in zip(tests, qs):
            r.calibration[k.replace("_p", "_q")] = float(q)
    free = [i for i, (_, f) in enumerate(ok) if f is not None]
    decided = dict(zip(free, lf.decide([ok[i][1] for i in free], opts.alpha)))
    for i, (r, _) in enumerate(ok):
        free_r = decided.get(i)
        c, s = r.calibration, r.scores
        few = c["n_families"] < lf.FEW_MIN_FAMILIES
        if few and r.has_label:
            r.verdict, r.reason = f"insufficient: {lf.families(c['n_families']).replace(' init', '')}", \
                f"at least {lf.FEW_MIN_FAMILIES} independent init families are needed to decide"
        else:
            r.verdict, r.reason = verdict(s.get("deep_ami"), r.noise_score, s.get("probe_auroc"), r.binary_label, opts,
                                          r.has_label, c.get("deep_ami_q"), c.get("noise_ami_q"), c.get("probe_auroc_ci"),
                                          s.get("lineage_auc"), c.get("lineage_auc_q"), Floor.of(c, opts.n_perm),
                                          c.get("probe_auroc_q"), c.get("probe_auroc_p"))
            if s.get("probe_skipped") and r.has_label:
                r.reason = f"{r.reason}; {s['probe_skipped']}"
            if c["n_families"] < lf.MIN_FAMILIES and r.has_label:
                r.reason = f"{r.reason}; {few_families_reason(c['n_families'], r.verdict)}"
        c["probe_only"] = probe_only(r.verdict, s.get("deep_ami"), c.get("deep_ami_q"), opts)
        deep_ok = any(c.get(k) is not None and c[k] <= opts.alpha for k in ("deep_ami_q", "probe_auroc_q"))
        ident_ok = c.get("lineage_auc_q") is not None and c["lineage_auc_q"] <= opts.alpha \
            and s.get("lineage_auc") is not None and s["lineage_auc"] >= opts.lineage_threshold
        noise_ok = c.get("noise_ami_q") is not None and c["noise_ami_q"] <= opts.alpha or ident_ok
        r.label_free = label_free_json(free_r, r.model_ids, "" if opts.calibrate else "not computed (calibrate = false)",
                                       str(r.fingerprint))
        if r.has_label:
            r.significant = {"tracks deep differences": deep_ok or r.verdict == "tracks deep differences" and c.get("deep_ami_q") is None,
                             "tracks initialization noise": noise_ok, "tracks both": deep_ok and noise_ok}.get(r.verdict, False)
            r.label_free["agrees"] = agree(r.verdict, r.label_free["verdict"])
        else:
            r.significant = free_r is not None and free_r.significant


def few_families_reason(n_families: int, verdict: str = "") -> str:
    """The caution on a labelled verdict from two or three init families (docs/scorecard.md, "Two or three
    families"): the permutations are valid (a deep verdict's move the label within the families), the intervals are not."""
    if verdict in ("tracks deep differences", "tracks both"):
        return (f"only {n_families} init families: the permutation tests move the label among the models of each, "
                f"but no interval resamples so few families (at least {lf.MIN_FAMILIES}), and another family could differ")
    return f"only {n_families} init families: no interval resamples so few (at least {lf.MIN_FAMILIES})"


RECOVER_HINT = ("`--lineage COLUMN` names the model column that holds each model's init family (e.g. a column of an "
                "import's --metadata CSV), or `fingerprint lineage ZOO` recovers init families from the weights (where the "
                "architecture has hidden-unit permutation groups), and later analyses use them")


def label_free_json(res: lf.LabelFreeResult | None, ids: list[str], why: str = "", name: str = "this fingerprint"
                    ) -> dict[str, Any]:
    """The ``label_free`` dict of a fingerprint's result (summary.json): the verdict, its sentence,
    the tests' numbers, and, from :class:`analysis.effect.SizedLabelFree`, ``effect`` (the size of a
    deep verdict's difference) and ``family_apart`` (one family set apart by the basins of ``name``)."""
    if res is None:
        return {"verdict": "insufficient", "candidate_basins": {},
                "sentence": why or f"insufficient: the zoo names no lineage column to group models by ({RECOVER_HINT})"}
    basins = res.candidate_basins
    sentence = res.sentence or lf.SENTENCES[res.verdict]
    if res.n_families == 1:  # one family: the lineage column says nothing (an import's init_seed -1)
        sentence = f"{sentence} ({RECOVER_HINT})"
    size = res.effect() if isinstance(res, SizedLabelFree) and res.verdict in lf.DEEP_VERDICTS else None
    apart = res.apart if isinstance(res, SizedLabelFree) else None
    sentence = " ".join(t for t in (sentence, effect_text(size), apart_text(apart, name)) if t)
    return {"verdict": res.verdict, "sentence": sentence,
            "q": jsonable(res.q), "p_lineage": res.p_lineage, "p_groups": res.p_groups, "p_split": res.p_split,
            **{f"q_{name}": res.q_tests.get(name) for name in lf.TESTS},
            "n_null": res.n_null, "n_families": res.n_families, "n_unknown": res.n_unknown, "split_rate": res.split_rate,
            "n_related_families": res.n_related_families, "split_all_back": res.split_all is not None and not res.split_within,
            # [models in families of two or more, models tested]: a few relatives beside singletons (mostly_alone)
            "related_models": list(related_counts(res)[1:]) if res.family_sizes else None,
            "cutting": cutting(res), "cluster_index_groups": res.ci_groups,
            "cluster_index_split": res.ci_split, "cluster_index_within": res.ci_within, "split_within": res.split_within,
            "split_min_families": res.split_min_families, "cut_families": list(res.cut_families),
            "split_side_families": res.split_side_families, "split_side_whole": res.split_side_whole,
            "split_side_models": res.split_side_models, "split_side_light": res.split_side_light,
            "groups_axis": res.groups_axis,
            "cluster_index_axis": res.ci_axis, "pseudo_f": jsonable(res.pseudo_f), "family_groups": res.family_groups,
            "closest_groups": closest_groups(res), "effect": size, "family_apart": apart, "held": res.held,
            "candidate_basins": {} if basins is None else {m: int(b) for m, b in zip(ids, basins)}, "tree": res.tree,
            **{k: {m: int(b) for m, b in zip(ids, v)}
               for k, v in (("held_basins", res.held_basins), ("unconfirmed_basins", res.unconfirmed_basins)) if v is not None}}


def agree(labelled: str, free: str) -> bool | None:
    """Do the labelled and the label-free verdict say the same thing (deep, noise, or nothing)?"""
    kind = {"tracks deep differences": "deep", "tracks both": "deep", "tracks initialization noise": "noise",
            "uninformative": "none", "crosses lineage": "deep", "groups lineages": "deep", "lineage only": "noise",
            "no structure": "none"}
    a, b = kind.get(labelled), kind.get(free)
    return None if a is None or b is None else a == b


