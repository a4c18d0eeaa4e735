"""The population's label-free answer: the candidate deep differences the report's fingerprints find
without ground truth, and whether they are one difference seen several ways or several.

Each fingerprint's label-free verdict (:mod:`analysis.labelfree`) is judged alone. A user asks of the
population: is there a deep difference, and which models are on which side? Two deep verdicts whose
candidate basins agree (AMI >= :data:`AGREE` on the models both place) are one candidate difference
seen by two fingerprints; verdicts that do not agree are different candidates (two differences, or
not every one real). :func:`label_free_answer` links agreeing verdicts (single linkage) and names, for
each candidate, the fingerprints that find it and the basins of its representative: the consensus,
whose candidate basins agree best with the others', among the fingerprints not computed on a probe
set built from the ground truth (privileged ones are an upper bound and only stand in when nothing
else finds the candidate). Descriptive: agreement
between fingerprints that read the same outputs is not independent evidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from analysis.labelfree_sentences import DEEP_VERDICTS, sds

# Results are analysis.results' AnalysisResult / FingerprintResult, typed Any here: that module
# imports this one for summary.json, and the layer rule wants no cycle, not even for types.
AnalysisResult = FingerprintResult = Any
AGREE = 0.5  # AMI at or above which two partitions count as one (candidate basins here, clusters in analysis.results)
MIN_COMMON = 4  # models both verdicts place, below which their agreement is not measured


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
    privileged: bool
    q: float | None
    separation: float | None
    sizes: list[int]
    basins: dict[str, int]
    ami: list[float] | None = None
    columns: dict[str, bool] = field(default_factory=dict)  # model columns the candidate basins match -> graded


@dataclass
class Answer:
    """The label-free answer of a report: its ``candidates`` (most fingerprints first), the number
    of fingerprints judged (``n_judged``: analysed, not ``insufficient``), and one ``sentence``."""

    n_fingerprints: int
    n_judged: int
    candidates: list[Candidate] = field(default_factory=list)
    sentence: str = ""

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
    cands = sorted((_candidate(g, amis) for g, amis in groups), key=lambda c: (-len(c.fingerprints), c.q or 1.0))
    ans = Answer(len(analysed), len(judged), cands)
    ans.sentence = answer_sentence(ans)
    return ans


def _basins(r: FingerprintResult) -> dict[str, int]:
    """Model id -> candidate basin of ``r``'s deep verdict (models without one left out)."""
    return {str(m): int(b) for m, b in (r.label_free.get("candidate_basins") or {}).items() if int(b) >= 0}


def _agreement(a: dict[str, int], b: dict[str, int]) -> float | None:
    """AMI of two candidate partitions on the models both place (``None``: too few such models)."""
    from analysis.metrics import ami  # deferred for start-up time (scikit-learn)

    common = sorted(a.keys() & b.keys())
    if len(common) < MIN_COMMON:
        return None
    return ami([a[m] for m in common], [b[m] for m in common])


def _linked(deep: list[FingerprintResult]) -> list[tuple[list[FingerprintResult], np.ndarray]]:
    """The deep verdicts in groups linked by agreeing candidate basins (single linkage), each with
    the AMIs between its members ``[k, k]`` (NaN: not measured)."""
    parts = [_basins(r) for r in deep]
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
            if a is not None and a >= AGREE:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return [([deep[i] for i in g], amis[np.ix_(g, g)]) for g in groups.values()]


def _candidate(group: list[FingerprintResult], amis: np.ndarray) -> Candidate:
    """The :class:`Candidate` of one group of agreeing deep verdicts ``amis [k, k]`` (their pairwise
    AMIs). Its representative is the consensus: the member whose candidate basins agree best with
    the others' (mean AMI), not privileged, then the lowest q, then the widest separation (measured on
    the demo: the lowest q alone, tied at the permutation floor, picked the member furthest from the
    truth)."""
    k = len(group)
    mean = np.nanmean(np.where(np.eye(k, dtype=bool), np.nan, amis), 1) if k > 1 else np.zeros(1)

    def rank(i: int) -> tuple:
        free = group[i].label_free
        q, sep = free.get("q"), (free.get("effect") or {}).get("separation")
        return (_privileged(group[i]), -np.nan_to_num(mean[i], nan=-1.0), 1.0 if q is None else q, -(sep or 0.0))

    rep = group[min(range(k), key=rank)]
    basins = _basins(rep)
    sizes = sorted((sum(1 for b in basins.values() if b == c) for c in set(basins.values())), reverse=True)
    pairs = amis[np.triu_indices(k, 1)]
    pairs = pairs[~np.isnan(pairs)]
    return Candidate(
        fingerprints=[str(r.fingerprint) for r in group],
        verdicts={str(r.fingerprint): str(r.label_free["verdict"]) for r in group},
        representative=str(rep.fingerprint), privileged=_privileged(rep), q=rep.label_free.get("q"),
        separation=(rep.label_free.get("effect") or {}).get("separation"), sizes=sizes, basins=basins,
        ami=[float(pairs.min()), float(pairs.max())] if pairs.size else None, columns=_columns(group))


def _columns(group: list[FingerprintResult]) -> dict[str, bool]:
    """The model columns that some member's candidate basins match (:mod:`analysis.metadata`), each
    with whether it is graded (many numbers: the camps may be a threshold on a continuum)."""
    out: dict[str, bool] = {}
    for r in group:
        for e in r.metadata_match or []:
            if e.get("match"):
                out[str(e["column"])] = out.get(str(e["column"]), False) or bool(e.get("graded"))
    return out


def _privileged(r: FingerprintResult) -> bool:
    return bool((r.meta or {}).get("privileged"))


def _candidate_text(c: Candidate, n: int) -> str:
    who = ", ".join(f"{f}{' (privileged)' if f == c.representative and c.privileged else ''}" for f in c.fingerprints)
    agree = ""
    if c.ami is not None:
        span = f"{c.ami[0]:.2f}" if round(c.ami[0], 2) == round(c.ami[1], 2) else f"{c.ami[0]:.2f}-{c.ami[1]:.2f}"
        agree = (f"; their candidate basins agree, pairwise AMI {span}" if c.ami[0] >= AGREE else
                 f"; their candidate basins linked by pairs that agree, pairwise AMI {span}")
    size = " and ".join(map(str, c.sizes)) if len(c.sizes) <= 4 else f"{', '.join(map(str, c.sizes[:4]))}, ..."
    how = [f"q {c.q:.2g}"] if c.q is not None else []
    if c.separation is not None:
        how.append(f"{sds(c.separation)} SDs apart")
    lead = f"the consensus, {c.representative}'s" if len(c.fingerprints) > 1 else "its"
    cols = "".join(f"; it matches column '{col}'" + (" (graded: perhaps a continuum cut in two)" if graded else "")
                   for col, graded in c.columns.items())
    return (f"found by {len(c.fingerprints)} of {n} fingerprints ({who}{agree}): candidate basins of {size} models "
            f"({lead}{', ' + ', '.join(how) if how else ''}){cols}")


def answer_sentence(ans: Answer) -> str:
    """One sentence for the report's headline and the terminal."""
    n = ans.n_judged
    if n == 0:
        return "no answer without ground truth: every fingerprint's label-free verdict is insufficient (too few init families)"
    if not ans.candidates:
        return (f"no candidate deep difference: none of the {n} fingerprints judged finds basins that cut across or "
                "group the init families (initialization noise on this evidence, or a difference these fingerprints "
                "and families cannot show)")
    if len(ans.candidates) == 1:
        return "one candidate deep difference, " + _candidate_text(ans.candidates[0], n)
    texts = "; ".join(f"({i}) {_candidate_text(c, n)}" for i, c in enumerate(ans.candidates, 1))
    return (f"{len(ans.candidates)} candidate deep differences whose candidate basins do not agree (AMI below {AGREE:g}): "
            f"{texts}: several differences, or not all real; look at the models of each (summary.json label_free_answer)")
