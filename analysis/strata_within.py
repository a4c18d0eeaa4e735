"""A design column taken out as lineage that seems to decide a difference inside the init families, whatever the
clusters: the answer's reading of :func:`analysis.strata_sides.within_sides` over the judged fingerprints.

Outside audit 123: 4 tiny GPT-2 bases, each fine-tuned into 10 children on 10 data orders the bases shared
(``data_seed``), a backdoor in the data of orders 0-2. The label-free tests take a shared data order out as lineage
(models of one order are alike, as relatives are), and the backdoor went with it; the fingerprints' clusters were the
bases, so the reading of a column whose clusters follow it (:func:`analysis.answer._strata_followed`) had nothing to
read, and the answer was "no candidate" with no lead. Here each judged fingerprint's values' effects inside the
families are split into the two sides set farthest apart (:func:`analysis.strata_sides.within_sides`); the column
seems to decide a difference when the smallest chance among the fingerprints tested, times the number of
(fingerprint, column) tests (Bonferroni: the fingerprints see the same models, so agreeing ones are no independent
evidence), is at most
:data:`analysis.strata_sides.DECIDES_CHANCE`. docs/scorecard.md, "A column that decides inside the families".
"""

from __future__ import annotations

from typing import Any

from analysis.strata_sides import DECIDES_CHANCE

FingerprintResult = Any  # analysis.results' (it imports the answer, which imports this: typed Any here)

__all__ = ["strata_within"]


def strata_within(judged: list[FingerprintResult], said: set[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """The design columns (not in ``said``: those whose followed sides already decide one) whose values' effects
    inside the families the judged fingerprints set apart beyond their seed noise: ``{column: {sides, sizes,
    contrast, chance (the smallest), fingerprints (those whose sides are these, the smallest chance first),
    n_tested (the fingerprints that tested this column, below the contrast floor too), n_tests (of every column), corrected (the chance times n_tests)}}``, only where ``corrected`` is at most
    :data:`~analysis.strata_sides.DECIDES_CHANCE`."""
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    tested: dict[str, int] = {}  # each column's fingerprints tested, those below the contrast floor too
    for r in judged:
        for e in (r.scores or {}).get("strata_within") or ():
            tested[str(e["column"])] = tested.get(str(e["column"]), 0) + 1
            if e.get("column") not in said and e.get("chance") is not None:
                found.setdefault(str(e["column"]), []).append((str(r.fingerprint), e))
    n_tests = sum(tested.values())  # every (fingerprint, column) tested (review 128: corrected over the columns too)
    out = {}
    for col, hits in found.items():
        hits.sort(key=lambda h: (float(h[1]["chance"]), -float(h[1]["contrast"])))
        best = hits[0][1]
        corrected = min(1.0, float(best["chance"]) * n_tests)
        if corrected <= DECIDES_CHANCE:
            out[col] = {"sides": best["sides"], "sizes": best["sizes"], "contrast": float(best["contrast"]),
                        "chance": float(best["chance"]), "corrected": corrected, "n_tested": tested[col],
                        "n_tests": n_tests, "fingerprints": [f for f, e in hits if e["sides"] == best["sides"]]}
    return out
