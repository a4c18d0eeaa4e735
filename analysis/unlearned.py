"""Camps of models that did not learn the task: what the candidate's camps predict on the in-distribution probes.

Two rules that agree on the training data predict the same classes on inputs like it and differ
elsewhere; a backdoor predicts the same classes until its trigger is shown. Models that did not
learn the task (a learning rate too low, too few steps, a run that diverged) differ from the rest on
inputs like the training data's, and from each other as much: they agree with nothing. Such models
differ from the trained ones on every fingerprint at once, and an outside audit (94) read 6 of 96
models trained at a learning rate of 1e-5 (accuracy 0.30-0.52) as "one candidate deep difference,
found by 6 of 11 fingerprints ... 84 SDs apart": on the in-distribution predictions
(``disagreement:probe_set=in_dist``) that camp's models predicted other classes than the rest on 57%
of the probes and than each other on 61%, where the trained models differed among themselves on 5%
(and a planted second rule's camp, 10 of 96, on 7% against 6%).

:func:`attach` gives each fingerprint's candidate basins these figures (``label_free["in_dist_camps"]``:
``sizes``, ``within`` [the median disagreement of each camp's pairs], ``between``, ``fingerprint``, and
``modal``, each camp's median share of its models' most frequent class); :func:`agrees_with_nothing` and
:func:`one_class` (a training that collapsed to one class) read them (docs/scorecard.md, "Models that
did not learn").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

IN_DIST = "in_dist"  # the probe set of inputs like the training data's (docs/import.md)
DIFFERENT = 0.2  # camps that predict other classes on at least this share of those probes differ there
OTHERS = 3.0  # ... and at least this many times as often as the other camp's models differ among themselves
ALIKE = 0.75  # a camp whose models differ among themselves at least this share as often as from the others
ONE_CLASS = 0.95  # a model whose most frequent class is at least this share of its predictions predicts one class
MIXED = 0.8  # ... where the other camp's most frequent class is at most this share of theirs


def predictions(inputs: Sequence[Any]) -> tuple[str, np.ndarray, list[str], np.ndarray | None] | None:
    """``(name, disagreement [n, n], model_ids, modal_share [n] or None)`` of the fingerprint of the classes
    predicted on the in-distribution probes (a distance fingerprint whose metadata says ``predicts: classes``
    and ``probe_set: in_dist``; ``modal_share``, each model's most frequent class's share of its predictions,
    when its metadata has it), or ``None``."""
    for f in inputs:
        meta = f.meta or {}
        if (f.values is not None and meta.get("predicts") == "classes" and meta.get("output") == "distances"
                and (meta.get("params") or {}).get("probe_set") == IN_DIST):
            modal = meta.get("modal_share")
            modal = np.asarray(modal, dtype=np.float64) if modal is not None and len(modal) == len(f.model_ids) else None
            return f.name, np.asarray(f.values, dtype=np.float64), [str(m) for m in f.model_ids], modal
    return None


def camps(d: np.ndarray, ids: Sequence[str], basins: dict[str, int], modal: np.ndarray | None = None
          ) -> dict[str, Any] | None:
    """The median in-distribution disagreement inside each of two camps (``within``, in the camps' order
    0, 1) and between them (``between``), with the camps' ``sizes`` on the models ``d`` holds (and with
    ``modal`` ``[n]``, each camp's median share of its models' most frequent class, ``modal``); ``None``
    unless there are two camps of two models or more."""
    pos = {m: i for i, m in enumerate(ids)}
    lab = {int(b) for b in basins.values()}
    if lab != {0, 1}:
        return None
    rows = [np.asarray([pos[m] for m, b in basins.items() if int(b) == k and m in pos], dtype=int) for k in (0, 1)]
    if min(len(r) for r in rows) < 2:
        return None

    def inside(r: np.ndarray) -> float:
        block = d[np.ix_(r, r)]
        return float(np.median(block[~np.eye(len(r), dtype=bool)]))

    out = {"sizes": [len(r) for r in rows], "within": [inside(r) for r in rows],
           "between": float(np.median(d[np.ix_(rows[0], rows[1])]))}
    if modal is not None:
        out["modal"] = [float(np.median(modal[r])) for r in rows]
    return out


def agrees_with_nothing(stats: dict[str, Any] | None) -> int | None:
    """The camp (0 or 1) of :func:`camps` ``stats`` whose models predict other classes than the other camp's on
    at least :data:`DIFFERENT` of the in-distribution probes, and :data:`OTHERS` times as often as those
    differ among themselves, while differing among themselves at least :data:`ALIKE` as often: models that
    learned nothing in common, with the rest or with each other. ``None`` when no camp is such."""
    if not stats:
        return None
    within, between = stats["within"], stats["between"]
    for k in (0, 1):
        if between >= max(DIFFERENT, OTHERS * within[1 - k]) and within[k] >= ALIKE * between:
            return k
    return None


def one_class(stats: dict[str, Any] | None) -> int | None:
    """The camp (0 or 1) of :func:`camps` ``stats`` whose models predict one class for nearly every
    in-distribution probe (its median share at least :data:`ONE_CLASS`) where the other camp's do not (at
    most :data:`MIXED`), the camps apart on at least :data:`DIFFERENT` of those probes: a training that
    collapsed (audit 92: 12 models at a learning rate of 0.5, accuracy 0.52, alike among themselves),
    or ``None``."""
    if not stats or "modal" not in stats or stats["between"] < DIFFERENT:
        return None
    for k in (0, 1):
        if stats["modal"][k] >= ONE_CLASS and stats["modal"][1 - k] <= MIXED:
            return k
    return None


def differ_in_distribution(stats: dict[str, Any] | None) -> bool:
    """Whether :func:`camps` ``stats`` say the camps predict other classes on at least :data:`DIFFERENT` of the
    in-distribution probes, :data:`OTHERS` times as often as either camp's models differ among themselves: two
    functions of inputs like the training data's (another goal, or a failure one camp shares, such as a class
    predicted for every input), where two rules that agree on the training data would predict alike."""
    return bool(stats) and stats["between"] >= max(DIFFERENT, OTHERS * max(stats["within"]))


def attach(results: Sequence[Any], inputs: Sequence[Any]) -> None:
    """Each result's candidate basins (``label_free["candidate_basins"]``) given :func:`camps` of the
    in-distribution predictions, as ``label_free["in_dist_camps"]`` (with the ``fingerprint`` they come
    from); nothing when no fingerprint of those predictions was analysed."""
    found = predictions(inputs)
    if found is None:
        return
    name, d, ids, modal = found
    for r in results:
        basins = (r.label_free or {}).get("candidate_basins") or {}
        stats = camps(d, ids, {str(m): int(b) for m, b in basins.items() if int(b) >= 0}, modal)
        if stats is not None:
            r.label_free["in_dist_camps"] = {**stats, "fingerprint": name}
