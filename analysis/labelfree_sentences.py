"""The words of the label-free verdicts: each verdict's sentence and the qualifications added to it.

:func:`analysis.labelfree.decide` sets a verdict from the corrected tests; this module says what to
conclude from it, and no more than the tests showed: a failure to find groups is "could not be told
apart from one cloud", not "one cloud"; a groups test near significance names its closest split of
the families as exploratory (:data:`EXPLORATORY_P`); a deep verdict from few families carries the
caution of ``docs/scorecard.md`` ("Few families"). Nothing here changes a test statistic or a
p-value. Functions take a :class:`~analysis.labelfree.LabelFreeResult` (read by attribute, so this module
imports nothing of ours but :mod:`analysis.sortkeys` and :data:`analysis.resampling.MIN_FAMILIES`): strings or dicts out.
Longer than ~400 lines: every reason a verdict is held back (small, coarse, no gap, too few models beside a gap)
has its own sentence, and they are read together, so they stay in one place.
"""

from __future__ import annotations

from typing import Any

from analysis.resampling import MIN_FAMILIES
from analysis.sortkeys import natural_key

__all__ = ["CAMP_MIN_MODELS", "camp_min", "all_split_floor", "within_floor", "DEEP_VERDICTS", "SENTENCES", "FEW_SENTENCES", "NO_RELATIVES", "EXPLORATORY_P", "FEW_FAMILIES", "FEW_FAMILIES_Q", "FEW_ALWAYS", "families", "closest_groups",
           "closest_split", "closest_split_text", "cut_text", "MAX_CUT_NAMES", "few_families", "few_families_text", "with_unconfirmed", "alone", "few_count", "cutting",
           "effect_text", "effect_brief", "apart_text", "size_lines", "minority_text", "mostly_alone", "nearly_alone_sentence", "related_counts"]

DEEP_VERDICTS = ("crosses lineage", "groups lineages")  # the label-free verdicts that claim candidate deep basins
TESTS = ("lineage", "groups", "split")  # a fingerprint's label-free tests, in the order decide() corrects them

SENTENCES = {
    "crosses lineage": "Members of one init family land in different candidate basins, the same way across families: "
                       "a difference the seed does not decide (candidate deep difference).",
    "groups lineages": "Whole init families fall into separate groups, more clearly than one Gaussian cloud would: "
                       "candidate seed-decided basins (a deep difference, or a strong seed effect: check the groups).",
    "lineage only": "Families are identifiable, but their centroids could not be told apart from one cloud (no groups "
                    "shown): this fingerprint tracks what the init seed decides, initialization noise unless a "
                    "difference the seed decides is too weak or too graded to group the families (more families "
                    "would tell), or one that varies by degrees within the families, which forms no basins.",
    "no structure": "No significant family or basin structure at this population size.",
    "insufficient": "Too few init families to decide.",
}
# the verdicts' sentences at two or three families, where no groups of families are tested
FEW_SENTENCES = {
    "crosses lineage": "Members of one init family land in different candidate basins, the same way in each of the "
                       "families they divide: a difference the seed does not decide (a lead at two or three families).",
    "lineage only": "Families are identifiable (with two or three, groups of families are not tested): this fingerprint "
                    "tracks what the init seed decides, initialization noise unless the difference between these few "
                    "families is itself the one sought (more families would tell).",
}
# every model its own init family: nothing tells a seed-decided difference from one the training decided,
# and the lineage and within-family tests cannot run
NO_RELATIVES = {
    "groups lineages": "The models fall into separate groups, more clearly than one Gaussian cloud would: candidate "
                       "basins. Every model is its own init family, so whether the seed or the training decided them "
                       "cannot be told.",
    "no structure": "No significant basin structure at this population size. Every model is its own init family, so "
                    "whether families are identifiable, and whether camps cut across them, was not tested.",
}
# A verdict without a deep difference whose raw groups p-value is below this names the groups test's
# split of the families, as exploratory. 0.2: an outside audit's 12 families of a seed-decided
# first/last rule got p_groups 0.09-0.12 with groups equal to the truth (docs/scorecard.md, "Closest
# split"); on a calibrated null the pointer appears for at most a fifth of the fingerprints (fewer:
# the groups test is conservative), so it is a lead to check, never evidence.
EXPLORATORY_P = 0.2
SIGNIFICANT_Q = 0.05  # the verdicts' alpha (analysis.labelfree.decide)
FEW_FAMILIES = 5  # a deep verdict from this many init families or fewer carries the caution of docs/scorecard.md
# ... when its q is above this: real null populations of 4-6 families gave their deep verdicts at q 0.027-0.048
# (docs/scorecard.md, "Few families"); a planted backdoor at 5 families came at q 0.008 on every fingerprint
FEW_FAMILIES_Q = 0.02
# camps held back for no gap whose smaller holds this many models or fewer: no gap test can tell a small basin from a
# few models far out in one spread there (effect.spacing_p needs a gap over 600 times a camp of 2's own range among
# 32 models), so they are said as a lead, not as a continuum cut in two (held "few": an outside audit, twenty-first session)
FEW_MODELS = 3


CAMP_MIN_MODELS = 10  # the smallest camp the split tests may have to find never needs more models than this


def camp_min(n: int, per: int, ceil: bool = True) -> int:
    """The fewest models a 2-means camp of the split tests may hold among ``n``: one in ``per`` (rounded up, or
    down without ``ceil``), at least 2 (a camp, not a lone outlier) and at most :data:`CAMP_MIN_MODELS`. Without
    the cap the floor grew with the population: at 800 models the split of all models needed a camp of 40 and the
    within-family one of 80, so a backdoor in 19 or 35 of 800 models, that three fingerprints set apart exactly,
    was padded with clean models into a continuum or not seen (outside audit 110). Data and null replicates use the
    same floor, so the tests stay calibrated."""
    share = -(-n // per) if ceil else n // per
    return max(2, min(share, CAMP_MIN_MODELS))


def all_split_floor(n: int) -> int:
    """The smallest camp of the split of all ``n`` models (a twentieth, rounded down): :func:`camp_min`."""
    return camp_min(n, 20, ceil=False)


def within_floor(m: int) -> int:
    """The smallest within-family camp among the ``m`` models with relatives (a tenth, rounded up): :func:`camp_min`."""
    return camp_min(m, 10)


def few_models(effect: dict) -> bool:
    """The smaller camp of a size (``analysis.effect.basin_effect``: ``smaller``) holds :data:`FEW_MODELS` or
    fewer models (``False`` for a size stored before it was)."""
    return (effect.get("smaller") or FEW_MODELS + 1) <= FEW_MODELS
# ... and with this many or fewer (only the camps inside the families are tested: analysis.labelfree._few_families),
# at any q: on subsets of 2 and 3 families of the outside audits' null zoos, 3 of 40 three-family subsets gave a
# deep verdict at q 0.01-0.018 (docs/scorecard.md, "Two or three families")
FEW_ALWAYS = MIN_FAMILIES - 1  # below the families a groups test needs (analysis.labelfree: n_fam < MIN_FAMILIES)
MAX_NAMES = 8  # family names shown per group of the closest split; the rest as a count
FAMILY_OF = "family of "  # how analysis.lineage.family_names names a family of several models
MAX_CUT_NAMES = 6  # cut families named in a `groups lineages` sentence; the rest as a count (all in summary.json)


def _getter(r: Any) -> Any:
    """``get(name)`` on a result (its attribute) or on its ``label_free`` dict (its key)."""
    return r.get if isinstance(r, dict) else lambda k, d=None: getattr(r, k, d)


def alone(r: Any) -> bool:
    """Whether every model of ``r`` (a result, or its ``label_free`` dict) is its own init family: no
    family has relatives (counted on the tested models, so a sampled population says it too)."""
    get = _getter(r)
    n_rel = get("n_related_families")
    if n_rel is not None:
        return n_rel == 0
    return get("n_families") is not None and get("n_families") == get("n_models")


def mostly_alone(r: Any) -> int | None:
    """The number of init families with relatives when some, but fewer than :data:`MIN_FAMILIES`, have them and
    they hold under half of the tested models (the rest one model each), else ``None``: camps that keep such
    families whole say nothing of the init seed. An outside audit (79): `fingerprint lineage` joined one chance
    pair of 24 independent seeds, and a rule planted model by model read "the init seed decides them"; a review:
    two such pairs, one time in four."""
    n_rel, related, tested = related_counts(r)
    if not n_rel or n_rel >= MIN_FAMILIES or related is None:
        return None
    return int(n_rel) if 2 * int(related) < int(tested) else None


def related_counts(r: Any) -> tuple[int | None, int | None, int | None]:
    """``(families with relatives, models in them, models tested)`` of a verdict ``r`` (a result or its
    ``label_free`` dict; ``None`` where it does not say)."""
    get = _getter(r)
    n_rel, sizes = get("n_related_families"), get("family_sizes") or {}
    # a result has its family sizes; its summary.json dict, [related models, tested models] (older ones: neither)
    related, tested = ((sum(int(c) for c in sizes.values() if int(c) >= 2), sum(int(c) for c in sizes.values()))
                       if sizes else tuple(get("related_models") or (None, None)))
    return n_rel, related, tested


def nearly_alone_sentence(n_rel: int) -> str:
    """The `groups lineages` sentence for :func:`mostly_alone` populations."""
    which = "one init family has" if n_rel == 1 else f"{n_rel} init families have"
    return (f"The models fall into separate groups, more clearly than one Gaussian cloud would: candidate basins. Only "
            f"{which} two or more models (the others are one model each), so whether the seed or the training decided "
            "them cannot be told.")


def few_count(r: Any) -> tuple[int, bool, bool] | None:
    """``(families, with_relatives, whole)`` behind a deep verdict of ``r`` (a result or its ``label_free``
    dict) when they are :data:`FEW_FAMILIES` or fewer and its q is above :data:`FEW_FAMILIES_Q`, or
    :data:`FEW_ALWAYS` or fewer whatever its q, else ``None``: a ``crosses lineage`` rests on the families with
    relatives (models on their own cut no family), ``groups lineages`` on all. A ``groups lineages`` of
    :data:`FEW_FAMILIES` or fewer is one at any q (``whole``): its camps are whole families, and so few fall
    into two groups in a handful of ways (4 families 2 and 2 in 3), whatever the models' own q says (an outside
    audit, 81: a base-decided rule of 4 families read as a candidate at q 0.014)."""
    get = _getter(r)
    verdict, n_fam, n_rel, q = get("verdict"), get("n_families"), get("n_related_families"), get("q")
    if verdict not in DEEP_VERDICTS or n_fam is None:
        return None
    if n_fam <= FEW_ALWAYS:  # two or three families: a lead at any q
        return n_fam, False, False
    if verdict == "groups lineages" and n_fam <= FEW_FAMILIES and n_rel != 0:  # (every model alone: no families)
        return n_fam, False, True
    if q is not None and q <= FEW_FAMILIES_Q:
        return None
    if verdict == "crosses lineage" and n_rel is not None and n_rel < n_fam:
        return (n_rel, True, False) if n_rel <= FEW_FAMILIES else None
    return (n_fam, False, False) if n_fam <= FEW_FAMILIES else None


def families(n: int) -> str:
    """``"1 init family"``, ``"4 init families"``."""
    return f"{n} init famil{'y' if n == 1 else 'ies'}"


def closest_groups(r: Any) -> dict[str, Any] | None:
    """The exploratory pointer of a verdict without a deep difference whose groups test has a raw
    p-value below :data:`EXPLORATORY_P`: ``{groups: {family: group}, sizes: {family: models},
    p_groups, threshold}`` (the groups test's own split of the families, not significant), else ``None``."""
    if r.verdict not in ("lineage only", "no structure") or r.p_groups is None or not r.family_groups:
        return None
    if not r.p_groups < EXPLORATORY_P or len(set(r.family_groups.values())) < 2:
        return None
    if (getattr(r, "q_tests", None) or {}).get("groups", 1.0) <= SIGNIFICANT_Q:  # significant, kept from its verdict by
        return None  # its size: the verdict's sentence says so (the sixteenth audit: "not significant" beside q 0.027)
    if r.p_split is not None and r.p_split <= 0.05 and (r.split_rate or 0.0) > 0:  # the models' camps cut families:
        return None  # a split of whole families would point at families whose members sit on both sides
    sizes = getattr(r, "family_sizes", None) or {}
    return {"groups": dict(r.family_groups), "sizes": {f: int(sizes[f]) for f in r.family_groups if f in sizes},
            "p_groups": r.p_groups, "threshold": EXPLORATORY_P}


def closest_split(r: Any, tail: bool = True) -> str:
    """The sentence naming :func:`closest_groups` of ``r`` (:func:`closest_split_text`), or ``""``."""
    cg = closest_groups(r)
    return "" if cg is None else " " + closest_split_text(cg, alone(r), tail)


def closest_split_text(cg: dict[str, Any], singletons: bool = False, tail: bool = True) -> str:
    """``closest_groups`` ``cg`` in words: families by name, with how many families and models each
    group holds, long groups shortened to :data:`MAX_NAMES` names and a count. ``singletons``: every
    model is its own family (the groups are of models); ``tail``: end with "more families would
    tell" (not when the verdict's sentence says it already)."""
    sizes = cg.get("sizes") or {}
    members: dict[int, list[str]] = {}
    for f, g in cg["groups"].items():
        members.setdefault(int(g), []).append(str(f))
    parts = []
    for g in sorted(members, key=lambda g: min(map(natural_key, members[g]))):
        names = sorted(members[g], key=natural_key)
        cut = len(names) > MAX_NAMES + 1  # one name more is shorter than "... 1 more"
        shown = ", ".join(names[:MAX_NAMES] if cut else names) + (f", ... {len(names) - MAX_NAMES} more" if cut else "")
        n_models = sum(int(sizes.get(f, 0)) for f in names)
        count = (f"{len(names)} models" if singletons else
                 f"{len(names)} {'family' if len(names) == 1 else 'families'}" + (f", {n_models} models" if n_models else ""))
        parts.append(f"{{{shown}}} ({count})")
    what = "models" if singletons else "families"
    return (f"Closest split of the {what} (exploratory, not significant: family groups p {cg['p_groups']:.2g}, "
            f"below {cg.get('threshold', EXPLORATORY_P):g} before any correction): {' vs '.join(parts)}"
            + (f"; more {what} would tell." if tail else "."))


def minority_text(r: Any) -> str:
    """The words on a `crosses lineage` split that is a minority (:func:`analysis.labelfree.minority`)."""
    n_side, n_cut, n_rel = r.split_side_families, len(r.cut_families or ()), r.n_related_families
    if (whole := r.split_side_whole):  # most of its models beside relatives, a few families mostly in it
        has = "y has most of its" if whole == 1 else "ies have most of their"
        return (f" The smaller candidate basin is a minority: {r.split_side_light} of its {r.split_side_models} models are of "
                f"{n_side - whole} init families that have relatives in the other basin, and {whole} more famil{has} models "
                f"in it (it cuts {n_cut} of {n_rel} families, too few to cross lineage by that share): a difference of few "
                "models that their init seed mostly does not decide (docs/scorecard.md, \"A minority\").")
    return (f" The smaller candidate basin is a minority: models of {n_side} init families, each beside relatives in the "
            f"other basin (it cuts {n_cut} of {n_rel} families, too few to cross lineage by that share, and sets no "
            "family apart): a difference of few models that their init seed does not decide (docs/scorecard.md, "
            "\"A minority\").")


def cut_text(cut: Any) -> str:
    """The words on the families a `groups lineages` split cuts (``cut``: their names), else ``""``:
    their models are on both sides, so each model is in its own side's candidate basin."""
    cut = [str(f) for f in cut or ()]
    if not cut:
        return ""
    of = all(f.startswith(FAMILY_OF) for f in cut)  # families named by a model (recovered, near twins): "of m03"
    cut = [f.removeprefix(FAMILY_OF) for f in cut] if of else cut
    shown = cut if len(cut) <= MAX_CUT_NAMES + 1 else [*cut[:MAX_CUT_NAMES], f"{len(cut) - MAX_CUT_NAMES} more"]
    names = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"
    one = len(cut) == 1
    which = (f"The init famil{'y' if one else 'ies'} of" if of else f"Famil{'y' if one else 'ies'}")
    return (f" {which} {names} {'is' if one else 'are'} cut by the split: {'its' if one else 'their'} "
            "models fall on both sides (seeds that did not decide the difference, or models near its boundary), "
            "each in its own side's candidate basin (summary.json label_free.cut_families).")


def effect_text(e: dict[str, Any] | None) -> str:
    """How big a deep verdict's difference is (:func:`analysis.effect.basin_effect` ``e``), in words:
    "a small difference: ..." when its candidate basins are closer than two halves of one Gaussian
    cloud along the line between them (``e["small"]``), else the size. The share is the family
    bootstrap's bias-corrected estimate with its interval (these models' own share beside it); the
    separation is these models' own, which the ``small`` rule reads, with the bias-corrected one
    beside it. ``""`` without ``e``."""
    if not e or e.get("share") is None:
        return ""
    where = "fingerprint's" if e.get("raw", True) else "test coordinates'"
    share = f"{share_pct(_corrected(e, 'share'))} of the {where} variance{bc_ci_text(e, 'share', share_pct)}"
    sep = e.get("separation")
    apart = "" if sep is None else f", {sds(sep)} within-basin SDs apart{bc_ci_text(e, 'separation', sds)}"
    if e.get("small"):
        return (f"A small difference: {share}{apart}, closer than the two halves of one Gaussian cloud "
                f"({e.get('threshold', 2.65):.2f} SDs): real perhaps, but check that it matters before calling it a basin "
                "(docs/scorecard.md, \"How big is the difference\").")
    return f"Size: the candidate basins explain {share}{apart}."


def _corrected(e: dict[str, Any], name: str) -> float:
    """``e``'s bias-corrected ``name`` (``share``, ``separation``), or the sample's where there is none
    (fewer than 4 families, or an analysis stored before ``METHODS_VERSION`` 14)."""
    v = e.get(f"{name}_bc")
    return e[name] if v is None else v


def bc_ci_text(e: dict[str, Any], name: str, fmt: Any) -> str:
    """The parenthesis after ``e``'s ``name``: for the share (shown bias-corrected) these models' own
    value, for the separation (shown as these models' own) the bias-corrected one, each with the
    95% interval; an analysis stored without ``*_bc`` (its interval a percentile one): the interval alone."""
    ci = e.get(f"{name}_ci")
    if e.get(f"{name}_bc") is None:
        return _ci(ci, fmt)
    ends = [] if not ci else [fmt(ci[0]), fmt(ci[1])]  # "over 1,000" at both ends: said once (audit 74)
    interval = "" if not ci else f", 95% family-bootstrap interval {ends[0] if ends[0] == ends[1] else '-'.join(ends)}"
    if name == "share":
        return f" (bias-corrected{interval}; {fmt(e[name])} in these models)"
    return f" (bias-corrected {fmt(e[f'{name}_bc'])}{interval})"


def effect_brief(e: dict[str, Any]) -> str:
    """``e`` (:func:`analysis.effect.basin_effect`) in a few words: ``0.2% [0.04-9.7%], 0.48 SDs (small)``
    (the share bias-corrected, with its interval; the separation these models' own)."""
    share = "–" if e.get("share") is None else share_pct(_corrected(e, "share")) + (
        f" [{share_pct(e['share_ci'][0])}-{share_pct(e['share_ci'][1])}]" if e.get("share_ci") else "")
    sep = "" if e.get("separation") is None else f", {sds(e['separation'])} SDs"
    return share + sep + (" (small)" if e.get("small") else "")


def size_lines(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The terminal's lines from ``(fingerprint, label_free dict)`` pairs: one with the size of every
    deep verdict's difference (``effect``), one per set of families a `groups lineages` split cuts
    (``cut_families``, with the fingerprints that cut them), one per family set apart by a fingerprint's basins."""
    sizes = [f"{name} {effect_brief(d['effect'])}" for name, d in results
             if d.get("effect") and d.get("verdict") in DEEP_VERDICTS]
    lines = []
    if sizes:
        threshold = next(d["effect"].get("threshold") for _, d in results if d.get("effect")) or 2.65
        intervals = any(d["effect"].get("share_ci") for _, d in results if d.get("effect"))
        share = ("bias-corrected [95% family-bootstrap interval]" if intervals else
                 "as measured: no interval resamples fewer than 4 init families")
        lines.append("lineage, how big each candidate deep difference is (share of the fingerprint's variance the "
                     f"candidate basins explain, {share}; their separation in within-basin SDs in these models, "
                     f"small below {threshold:.2f}, two halves of one Gaussian cloud): " + "; ".join(sizes))
    cut: dict[tuple[str, ...], list[str]] = {}  # the families a groups split cuts -> the fingerprints that cut them
    for name, d in results:
        if d.get("cut_families") and d.get("verdict") == "groups lineages":
            cut.setdefault(tuple(map(str, d["cut_families"])), []).append(name)
    lines += [f"lineage, {', '.join(names)}:{cut_text(fams)}" for fams, names in cut.items()]
    return lines + [f"lineage, {name}: {apart_text(d['family_apart'], name)}" for name, d in results
                    if d.get("family_apart")]


def share_pct(v: float) -> str:
    """A share as a percentage, two significant digits below 10% (``0.2%``, ``4.3%``), whole above
    (``43%``, ``100%``: not ``1e+02%``)."""
    return f"{100 * v:.2g}%" if 100 * v < 9.95 else f"{100 * v:.0f}%"


def sds(v: float) -> str:
    """A separation in within-basin SDs: two significant digits below 10, whole below 1,000, and
    ``over 1,000`` above (basins whose models answer all but identically: no within-basin spread to
    measure against, not ``7.1e+15``)."""
    return f"{v:.2g}" if v < 9.95 else f"{v:.0f}" if v < 1000 else "over 1,000"


def _ci(ci: Any, fmt: Any) -> str:
    return "" if not ci else f" (95% family-bootstrap interval {fmt(ci[0])}-{fmt(ci[1])})"


def apart_text(a: dict[str, Any] | None, fingerprint: str = "this fingerprint") -> str:
    """The exploratory pointer of one family set apart by a fingerprint's basins
    (:func:`analysis.effect.family_apart` ``a``), or ``""``."""
    if not a:
        return ""
    n = int(a["models"])
    name = str(a["family"])  # a family named from the weights is "family of m1_0" already (an outside audit, 89)
    name = name[0].upper() + name[1:] if name.startswith(FAMILY_OF) else f"Family {name}"
    return (f"{name} ({n} model{'' if n == 1 else 's'}) stands apart from the other "
            f"{a['n_families'] - 1} on {fingerprint}: one of its basins is exactly that family (exploratory: one family "
            "is one seed's quirk, or a difference only its seed got; look at its models).")


def unknown_note(r: Any, basins: bool = True) -> str:
    """The note of a result whose tests left out the models without a lineage value, else ``""``
    (``basins``: say that each joins the nearest candidate basin)."""
    n = int(_getter(r)("n_unknown") or 0)
    return "" if not n else " " + unknown_text(n, basins=basins)


def unknown_text(n: int, tests: str = "these tests", basins: bool = True) -> str:
    """Why ``n`` models without a lineage value are not in the label-free tests."""
    return (f"{n} {'model has' if n == 1 else 'models have'} no lineage value (a blank cell, or no row in the metadata CSV): left out of "
            f"{tests}, since nobody knows whose relatives they are"
            + ("; each joins the nearest candidate basin." if basins else "."))


def few_families(r: Any) -> str:
    """The caution after a deep verdict from :data:`FEW_FAMILIES` init families or fewer (:func:`few_count`), else ``""``."""
    few = few_count(r)
    return "" if few is None else " " + few_families_text(*few)


def few_families_text(n_families: int, with_relatives: bool = False, whole: bool = False) -> str:
    """The few-families caution (docs/scorecard.md, "Few families", and "Two or three families")."""
    if whole:
        return (f"Only {families(n_families)}, grouped: so few can fall into two groups in only a handful "
                "of ways: the camps are a reason to train more families, not yet a finding, whatever their q (docs/scorecard.md, "
                "\"Few families\").")
    if n_families <= FEW_ALWAYS and not with_relatives:
        return (f"Only {families(n_families)}: with two or three, only the camps inside the families are tested, and a "
                "deep verdict is a reason to train more families, not yet a finding (docs/scorecard.md, \"Two or three "
                "families\").")
    return (f"Only {families(n_families)}{' with relatives' if with_relatives else ''}: at this few, a deep verdict "
            f"at q above {FEW_FAMILIES_Q:g} is a reason to train more families, not yet a finding (docs/scorecard.md, "
            "\"Few families\").")


def with_unconfirmed(sentence: str, r: Any, q: dict, i: int, alpha: float, small: dict | None = None) -> str:
    """``sentence`` of a verdict without a deep difference, qualified when a deep test was significant
    before the correction across fingerprints but not after: the answer is then "cannot tell", not
    "no groups shown". ``q``: the adjusted p-values by ``(result index, test)``; ``i``: this one's;
    ``small``: the significant partitions left out for being small (:func:`analysis.labelfree.decide`)."""
    hints, lone = [], ""
    q_split = q.get((i, "split"), 1.0)
    small = small or {}
    if small:  # significant, but closer than two halves of one Gaussian cloud
        key = next(iter(small))
        e, test = small[key], "groups" if key == "groups" else "split"
        what = "family groups" if test == "groups" else "models' two camps"
        held = e.get("separation_heldout")
        if e.get("small") and held is not None and e.get("separation") is not None and held < e["separation"] \
                and e["separation"] >= e.get("threshold", 2.65):  # only the line fitted to them separates them
            lone = (f" The {what} (q {q.get((i, test), 1.0):.3g}) are {sds(e['separation'])} within-basin SDs apart on "
                    f"the line fitted to them, but {sds(held)} on lines fitted without each family, closer than the "
                    f"two halves of one Gaussian cloud ({e.get('threshold', 2.65):.3g}): camps that no other family "
                    "would draw, not a basin (docs/scorecard.md, \"How big is the difference\").")
        elif e.get("coarse") and e["steps"] <= 0:  # camps found in the test's coordinates, no farther apart than within
            lone = (f" The {what} (q {q.get((i, test), 1.0):.3g}) are no farther apart in the fingerprint's own distances "
                    "than the models within each camp (by the fingerprint's smallest step, one prediction of its probes: "
                    f"{e['steps']:.2g}): not a basin (docs/scorecard.md, \"How big is the difference\").")
        elif e.get("coarse"):
            lone = (f" The {what} (q {q.get((i, test), 1.0):.3g}) differ by {e['steps']:.2g} of the fingerprint's smallest "
                    f"steps (one prediction of its probes), fewer than {e.get('min_steps', 2):g}: a difference of an input or so, "
                    "not a basin, however far apart it puts them (docs/scorecard.md, \"How big is the difference\").")
        elif e.get("small"):
            lone = (f" The {what} (q {q.get((i, test), 1.0):.3g}) are only {sds(e['separation'])} within-basin SDs apart, "
                    f"closer than the two halves of one Gaussian cloud ({e.get('threshold', 2.65):.3g}): too small a difference "
                    "to call a basin (docs/scorecard.md, \"How big is the difference\").")
        elif few_models(e):  # no gap a test can see beside so few models
            apart = f"are {sds(e['separation'])} within-basin SDs apart, " if e.get("separation") is not None else ""
            lone = (f" The {what} (q {q.get((i, test), 1.0):.3g}) {apart}"
                    f"the smaller of {e['smaller']} model{'s' if e['smaller'] != 1 else ''}: too few for a gap test to tell a "
                    f"small basin from a few models far out in one spread (dip test p {e['dip_p']:.2g}{_spacing(e)}), so no "
                    "deep verdict; a lead to look at (docs/scorecard.md, \"A gap beside a small minority\").")
        else:  # far enough apart, but no gap between them
            lone = (f" The {what} (q {q.get((i, test), 1.0):.3g}) have no gap between them: along the line joining them the "
                    f"models spread as one continuum (dip test p {e['dip_p']:.2g}{_spacing(e)}), a graded difference cut in two (a "
                    "training knob varied per model, a data order shared by the families) as likely as two basins "
                    "(docs/scorecard.md, \"A gap between the camps\").")
    hinted: list[tuple[float, str]] = []  # (p, test) of the tests the hints name
    tests_small = {"groups" if k == "groups" else "split" for k in small}
    if "split" not in tests_small:  # (a small split is said above)
        if r.p_split is not None and q_split <= alpha and (r.split_side_families, r.split_side_whole) == (1, 0):
            lone += (f" The models' two camps (q {q_split:.3g}) split the models of one init family, relatives on both "
                     "sides, and leave every other family whole: a difference the seed did not decide, seen in one family "
                     "only, which cannot tell a basin from that family's own quirk (a minority needs models of at least "
                     "two families); an exploratory lead: look at that family's models.")
        elif r.p_split is not None and q_split <= alpha:  # significant, but its families' sides are one family and the rest
            lone += (f" The models' two camps (q {q_split:.3g}) set one init family apart from the others: that family's "
                     "quirk, not a basin (a group needs at least two families).")
        elif r.p_split is not None and r.p_split <= alpha:
            hints.append(f"two camps p {r.p_split:.3g} (q {q_split:.3g}), {cutting(r)}")
            hinted.append((r.p_split, "split"))
    if r.p_groups is not None and r.p_groups <= alpha and "groups" not in tests_small:
        hints.append(f"family groups p {r.p_groups:.3g} (q {q.get((i, 'groups'), 1.0):.3g})")
        hinted.append((r.p_groups, "groups"))
    if sentence in (SENTENCES["lineage only"], FEW_SENTENCES["lineage only"]) and (hints or lone):  # not "no groups shown"
        sentence = "Families are identifiable."
    elif sentence == SENTENCES["no structure"] and lone:  # a significant partition that is no deep verdict
        sentence = "No deep difference on this evidence."
    if not hints:
        return sentence + lone
    n_null = getattr(r, "n_null", None)
    # a test named here at the floor of its replicates: more of them could tell; above it (after the re-draw,
    # analysis.labelfree.replicates_to_decide, too) only more families can (not a test held back above, whose
    # floor tells nothing of these: outside audit 110, F6)
    at = [p for p, test in hinted if at_floor(p, n_null, test)]
    more, floor = ((", or more null replicates with `--n-perm`,", f"; p {min(at):.2g} is the smallest {n_null} null "
                    "replicates can give") if at else ("", ""))
    return (f"{sentence}{lone} Inconclusive about a deep difference: {'; '.join(hints)}, significant before the "
            f"correction across fingerprints but not after (more init families{more} would tell{floor}).")


def p_floor(n_null: int | None, test: str) -> float | None:
    """The smallest raw p-value the label-free ``test`` (``groups`` or ``split``) can give with ``n_null``
    replicates: ``2 / (n_null + 1)`` for the groups (two statistics, each ``1 / (n_null + 1)`` at best,
    doubled), ``1 / (n_null + 1)`` for the split (two statistics on ``2 n_null + 1`` replicates each,
    doubled); ``None`` without replicates."""
    return (2.0 if test == "groups" else 1.0) / (n_null + 1) if n_null else None


def at_floor(p: float, n_null: int | None, test: str) -> bool:
    """Is the raw p-value ``p`` of ``test`` at :func:`p_floor` (up to float rounding)?"""
    floor = p_floor(n_null, test)
    return floor is not None and p <= floor * (1 + 1e-9)


def cutting(r: Any) -> str:
    """``cutting none of the 16 families with relatives`` / ``3 of 16 ...`` / ``all 16 ...`` (a share when the
    count of families with relatives is not known)."""
    get = _getter(r)
    n, rate = get("n_related_families"), get("split_rate")
    if n == 0:
        return "no family has relatives to cut"
    if n is None:
        return f"cutting {rate or 0:.0%} of the families"
    cut = int(round((rate or 0) * n))
    with_rel = f"{n} {'family' if n == 1 else 'families'} with relatives"
    if cut == 0:
        return f"cutting none of the {with_rel}"
    return f"cutting all {with_rel}" if cut == n else f"cutting {cut} of {with_rel}"


def _spacing(effect: dict) -> str:
    """``; spacing p 1`` for a size that carries the spacing bound (``analysis.effect.spacing_p``), else ``""``."""
    p = effect.get("spacing_p")
    return "" if p is None else f"; spacing p {p:.2g}"


def closest_splits_disagree(label_free: dict[str, dict[str, Any] | None]) -> list[list[str]]:
    """The fingerprints whose closest splits of the families (``closest_groups``) name different
    partitions, grouped by partition (the same partition whatever its group numbers); ``[]`` when
    there are fewer than two partitions. ``label_free``: fingerprint name -> its label-free result."""
    kinds = closest_partitions(label_free)
    return [names for _, names in kinds] if len(kinds) > 1 else []


def closest_partitions(label_free: dict[str, dict[str, Any] | None]) -> list[tuple[frozenset, list[str]]]:
    """Each partition of the families that fingerprints' closest splits name, with those fingerprints."""
    kinds: list[tuple[frozenset, list[str]]] = []
    for name, d in label_free.items():
        groups = ((d or {}).get("closest_groups") or {}).get("groups")
        if not groups:
            continue
        members: dict[int, set] = {}
        for fam, g in groups.items():
            members.setdefault(int(g), set()).add(str(fam))
        part = frozenset(frozenset(m) for m in members.values())
        for p, names in kinds:
            if p == part:
                names.append(name)
                break
        else:
            kinds.append((part, [name]))
    return kinds


def _nested_minorities(partitions: list[frozenset]) -> list[int] | None:
    """The sizes of the smaller sides of two-sided ``partitions``, smallest first, when each smaller side holds
    the one before it (one minority seen more or less completely), else ``None``."""
    sides = []
    for part in partitions:
        if len(part) != 2:
            return None
        a, b = sorted(part, key=len)
        if len(a) == len(b):
            return None
        sides.append(a)
    sides.sort(key=len)
    return [len(s) for s in sides] if all(x < y for x, y in zip(sides, sides[1:])) else None


def closest_splits_sentence(label_free: dict[str, dict[str, Any] | None]) -> str | None:
    """The caution when the closest splits of ``label_free``'s fingerprints (as given to :func:`closest_splits_disagree`)
    name different partitions (the terminal, the report and summary.json), else ``None``; splits whose smaller sides
    nest are said as one minority (an outside audit, 103: pointers to 4, 5 and 6 of 24 independent GRUs, the 6 a
    planted backdoor and the others inside it, were said as disagreeing, "at most one can be real")."""
    parts = closest_partitions(label_free)
    if len(parts) < 2:
        return None
    kinds = [names for _, names in parts]
    sizes = _nested_minorities([p for p, _ in parts])
    if sizes:
        order = [names for _, names in sorted(parts, key=lambda pn: min(len(g) for g in pn[0]))]
        return ("these closest splits nest (" + "; ".join(", ".join(fps) for fps in order) + "): the smaller side of "
                f"each holds the one before ({', '.join(map(str, sizes))} families): perhaps one minority seen more or "
                "less completely, or splits that nest by chance around one outlying family; a lead to check, not a "
                "finding (more families, or probes on which the candidate behaviours "
                'differ, would tell: docs/scorecard.md, "What to look with")')
    most = max(kinds, key=len)
    agree = (f"; {len(most)} of the {sum(map(len, kinds))} name one split ({', '.join(most)})"
             if len(most) > 1 and sum(len(k) == len(most) for k in kinds) == 1 else "")  # (outside audit 116: 3 of 4)
    return ("these closest splits disagree (" + "; ".join(", ".join(fps) for fps in kinds) + f"){agree}: at most one "
            "can be real; leads to check, not findings (more families, or probes on which the candidate behaviours "
            'differ, would tell: docs/scorecard.md, "What to look with")')
