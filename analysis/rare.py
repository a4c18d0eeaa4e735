"""Far tails: a few models set far apart along one direction, and the lead when fingerprints agree on them.

The label-free split tests look for two camps with a 2-means index over the top principal directions, and a
camp must hold :data:`~analysis.labelfree_sentences.CAMP_MIN_MODELS` models and stand far enough out to move that
index: a rare camp (11 of 320 models) a handful of within-family SDs out moves it too little (outside audit 111: a
CNN backdoor in 3% of the models, missed). Such a camp makes the distribution along its direction heavy-tailed, so
it is what a projection pursuit finds: :func:`far_tail` whitens a fingerprint's coordinates (the PCA the models
were clustered in), finds by FastICA (the log-cosh contrast: the cube contrast, kurtosis itself, overflowed on
heavy tails, review 112) its independent directions, takes the one of largest excess kurtosis, and returns the
models on its heavier side at least :data:`FAR_Z` robust SDs (median and MAD) out.

One fingerprint's far tail is no finding: seed noise has heavy tails too (0-5 models per fingerprint on the audits'
real nulls). The lead is agreement: :func:`far_tail_leads` names the models that :data:`MIN_TAIL_FINGERPRINTS` or
more fingerprints' far tails hold, when there are at least :data:`MIN_TAIL_MODELS` of them and no init family holds
more than half, and :func:`tail_leads` only where the label-free answer has no candidate. Measured on the outside
audits' imported populations of 128-1,200 models and review 112's synthetic ones (docs/scorecard.md, "Far tails"):
no lead on the real nulls, the backdoors the split tests miss named with no clean model among them; seed noise with
heavy tails shared by the fingerprints makes a lead of its extremes, which the sentence says.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from analysis.values import missing

FAR_Z = 5.0  # robust SDs (1.4826 MAD) beyond the median along the most kurtotic direction: a model in the far tail
FAR_TAIL_MIN_MODELS = 100  # populations smaller than this get no far tail (too few models for kurtosis to tell)
FAR_TAIL_DIMS = 10  # the principal directions searched, at most (and at most one per 20 models)
MIN_TAIL_FINGERPRINTS = 2  # fingerprints whose far tails hold a model before it is in a lead
MIN_TAIL_MODELS = 4  # models in a lead, at least (on the audits' nulls: at most 2 in two fingerprints' tails)
MAX_TIED = 0.2  # a direction on which more than this share of the models share one value gets no far tail (review 112)


def far_tail(coords: np.ndarray, random_state: int = 0) -> dict[str, Any] | None:
    """The far tail of ``coords [n, c]`` (a fingerprint's coordinates, models as rows): ``{"rows": [...] (indices,
    farthest first), "z": [...] (their robust z), "kurtosis": excess kurtosis of the direction}``, or ``None`` for
    fewer than :data:`FAR_TAIL_MIN_MODELS` models, no spread, no finite direction, or a direction without a robust
    scale (more than :data:`MAX_TIED` of its values on one). Deterministic for a given ``random_state``."""
    from scipy.stats import kurtosis
    from sklearn.decomposition import PCA, FastICA

    x = np.asarray(coords, dtype=np.float64)
    n = len(x)
    if n < FAR_TAIL_MIN_MODELS or x.ndim != 2 or not np.isfinite(x).all():
        return None
    x = x - x.mean(0)
    k = max(1, min(FAR_TAIL_DIMS, x.shape[1], n // 20, np.linalg.matrix_rank(x)))
    if not np.any(x):
        return None
    try:
        with warnings.catch_warnings():  # FastICA's "did not converge": the direction found so far is still a direction
            warnings.simplefilter("ignore")
            z = PCA(n_components=k, whiten=True, random_state=random_state).fit_transform(x)
            s = z if k == 1 else FastICA(n_components=k, whiten="unit-variance", fun="logcosh", random_state=random_state,
                                         max_iter=1000).fit_transform(z)
    except (ValueError, np.linalg.LinAlgError, FloatingPointError):  # a degenerate spread: no direction to read
        return None
    if not np.isfinite(s).all():
        return None
    kurt = kurtosis(s, axis=0)
    j = int(np.argmax(kurt))
    d = s[:, j] - np.median(s[:, j])
    if abs(d.min()) > d.max():  # the heavier side up
        d = -d
    _, ties = np.unique(d, return_counts=True)
    mad = 1.4826 * float(np.median(np.abs(d)))
    if not mad > 0 or ties.max() > MAX_TIED * n:  # many models on one value (a saturated fingerprint): no robust scale
        return None
    r = d / mad
    rows = [int(i) for i in np.argsort(-r) if r[i] >= FAR_Z]
    return {"rows": rows, "z": [round(float(r[i]), 2) for i in rows], "kurtosis": round(float(kurt[j]), 2)}


def far_tail_leads(tails: Mapping[str, Sequence[str]], family: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The lead of the fingerprints' far tails (``{fingerprint: model ids}``): ``[{"models": [...], "fingerprints":
    [...]}]`` with the models that :data:`MIN_TAIL_FINGERPRINTS` or more tails hold, when at least
    :data:`MIN_TAIL_MODELS`, and the fingerprints whose tails hold at least half of them (at least
    :data:`MIN_TAIL_FINGERPRINTS` of those); ``[]`` otherwise, or when one init family (``family``: model id -> family, where known) holds more than half of them: an init seed's quirk, which
    the lineage tests and the one-family pointer read (outside audit 112's nulls of 128 transformers: one whole family
    of 4 far out in three or four output fingerprints)."""
    counts = Counter(m for ids in tails.values() for m in set(ids))
    models = sorted(m for m, c in counts.items() if c >= MIN_TAIL_FINGERPRINTS)
    if len(models) < MIN_TAIL_MODELS:
        return []
    fams = Counter(str(family[m]) for m in models if family and family.get(m) is not None)
    if fams and 2 * max(fams.values()) > len(models):
        return []
    held = set(models)
    who = [f for f, ids in tails.items() if 2 * len(held & set(ids)) >= len(held)]
    # two or more fingerprints each holding at least half of them: one set, not a union of pairs that share a model or
    # two (review 112: with many fingerprints the union mixed models of different directions; audit 112's `bdds`: 7
    # models of which one fingerprint held most)
    return [{"models": models, "fingerprints": who}] if len(who) >= MIN_TAIL_FINGERPRINTS else []


def tail_leads(result: Any, answer: Any = None) -> list[dict[str, Any]]:
    """:func:`far_tail_leads` of an :class:`~analysis.results.AnalysisResult`'s fingerprints (``scores.far_tail``),
    privileged ones (built from the answer: ``meta.privileged``) left out; none when ``answer``
    (:func:`~analysis.answer.label_free_answer`) has a candidate: the far tails are a lead where the split tests found
    nothing, and beside a candidate they were the extremes of its camps or of a nuisance (outside audit 112's two
    rules and learning rates: 8-17 models of mixed kinds). Each lead also gives ``n_models`` (the population) and
    ``n_families`` (the known init families of its models)."""
    if getattr(answer, "candidates", None):  # the answer names a deep difference: the far tails are not its question
        return []
    tails = {str(r.fingerprint): ((r.scores or {}).get("far_tail") or {}).get("models") or []
             for r in result.fingerprints if r.analysed and not (r.meta or {}).get("privileged")}
    where: dict[str, Any] = {}
    for r in result.fingerprints:
        if r.analysed:
            where.update({m: v for m, v in zip(r.model_ids, r.lineage_values or []) if not missing(v)})
    leads = far_tail_leads({f: ids for f, ids in tails.items() if ids}, family=where)
    for lead in leads:
        r = next(r for r in result.fingerprints if str(r.fingerprint) == lead["fingerprints"][0])
        lead["n_models"] = len(r.model_ids)
        lead["n_families"] = len({str(where[m]) for m in lead["models"] if m in where})
    return leads


def models_named(ids: Sequence[str]) -> str:
    """``a, b, c, d, e, f, ...``: the first six model ids of a lead, for its sentence."""
    return ", ".join(ids[:6]) + (", ..." if len(ids) > 6 else "")


def tail_sentences(result: Any, answer: Any = None) -> list[str]:
    """One sentence per :func:`tail_leads` lead, for the report's verdict box and the terminal."""
    out = []
    for lead in tail_leads(result, answer):
        ids = lead["models"]
        who = models_named(ids)
        fams = f" of {lead['n_families']} init families" if lead["n_families"] else ""
        out.append(f"{', '.join(lead['fingerprints'])}: {len(ids)} of {lead['n_models']} models ({who}){fams} sit "
                   f"together far out along one direction (at least {FAR_Z:g} robust SDs, in the far tail of two or more "
                   "of these fingerprints): a rare camp that the split tests do not confirm (too few models, or not far "
                   "enough, to move them), or the extremes of seed noise with heavy tails that these fingerprints share; "
                   "an exploratory lead: look at these models (a backdoor or a rule a few models hold, or runs that "
                   "failed the same way?) (summary.json far_tails; docs/scorecard.md, \"Far tails\")")
    return out
