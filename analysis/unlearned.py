"""Camps of models that did not learn the task: what the candidate's camps predict on the in-distribution probes.

Two rules that agree on the training data predict the same classes on inputs like it and differ
elsewhere; a backdoor predicts the same classes until its trigger is shown. Models that did not
learn the task (a learning rate too low or too high, too few steps, a run that diverged) differ from
the trained ones on every fingerprint at once: an outside audit (94) read 6 of 96 models trained at a
learning rate of 1e-5 (accuracy 0.30-0.52) as "one candidate deep difference, found by 6 of 11
fingerprints ... 84 SDs apart". Two signs tell them from a basin without labels, both read from the
in-distribution predictions (``disagreement:probe_set=in_dist``, whose metadata records each model's
figures), and a third, outputs blown up by a run that diverged (:func:`diverged`):

- **flat outputs** (:func:`flat`): their log-probabilities barely move with the input while they predict
  other classes than the rest, or one class for nearly every input (the audits' collapsed, never-started
  and 1e-5 models: 0-0.27 nats of spread over the probes, against 12-23 for trained MLPs and CNNs; a real
  goal of rare classes, 3.5-4.7; a rule exported with small logits, 0.4-0.8 but the classes of the rest);
- **no agreement of their own** (:func:`agrees_with_nothing`): they predict other classes than the
  rest, and each model's nearest camp-mate differs from it nearly as often (audit 94's camp: 57% from the
  rest, 61% among themselves; two real minority goals in one camp have a near mate each, audit 95).

:func:`attach` gives each fingerprint's candidate basins these figures (``label_free["in_dist_camps"]``);
the answer reads them (docs/scorecard.md, "Models that did not learn").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from analysis.options import PER_MODEL_META
from analysis.sortkeys import natural_key

IN_DIST = "in_dist"  # the probe set of inputs like the training data's (docs/import.md)
DIFFERENT = 0.2  # camps that predict other classes on at least this share of those probes differ there
OTHERS = 3.0  # ... and at least this many times as often as the other camp's models differ among themselves
ALIKE = 0.75  # a camp whose models' nearest mates differ from them at least this share as often as the others do
NEAR_CHANCE = 0.8  # ... and among themselves this share as often as by chance: they agree with nothing
FLAT = 0.05  # a camp whose outputs move with the input at most this share as far as the other camp's ...
FLAT_NATS = 1.0  # ... and less than this (nats of log-probability over the probes), predicting other classes, ...
ONE_CLASS = 0.995  # ... or that predicts one class for at least this share of the probes (the other camp not) ...
FLAT_ONE = 0.2  # ... its outputs moving at most this share as far as the other camp's, has flat outputs
DIVERGED = 10.0  # a camp whose outputs move at least this many times as far as the other camp's ...
DIVERGED_NATS = 100.0  # ... and this far (nats of log-probability over the probes) has blown-up outputs
FLAT_BOTH = 0.01  # where both camps predict one class, a flat camp moves at most this share as far as the other
ERRATIC_SPREAD = 2.0  # a camp whose outputs move at least this many times as far as the other's (review 97) ...
ERRATIC = 0.3  # ... each model's nearest mate at least this share as far as
# the other camp, agrees with nothing of its own (audit 97: two of six models at too high a learning rate shared errors)
# a regression's camp whose outputs move at most this share as far as the other camp's has flat outputs (audit 98:
# 3 models at a learning rate of 1e-6 and 3 whose outputs went constant, 0.06 against 0.55)
FLAT_VALUES = 0.2
# a camp whose models differ among themselves at most this share of what chance gives is coherent: not flat (audit 99:
# another label map 0.03 of it, a target a tenth the scale 0.32; the audits' flat failed camps that predict several
# classes differ among themselves at 0.68 of chance or more, failed regressions about 1)
COHERENT = 0.4
# a camp whose outputs move as little as a flat one's (under FLAT_NATS, at most FLAT of the other's) and that predicts
# other classes on at least this share of the probes, each model without a near mate, learned the task less well
# (outside audit 115: 3 of 60 MLPs at a learning rate of 2e-5, accuracy 0.76-0.90, 0.23 nats against 10, 19% apart)
QUIET_DIFFERENT = 0.1
# ... and each model's nearest camp-mate at least this share as far as the camps are apart: models that err each on
# their own probes are about twice as far from one another as from the rest, models of a shared rule of their own
# (the rule's share r, their own errors e) about 2e / (r + e); review 116: at ALIKE (0.75) a shared rule with
# e >= 0.6 r was read as failure in 37-87% of camps; the audit's undertrained camp reads 1.1, seed noise 1.3-1.6
QUIET_ALONE = 1.0
NAMED = 4  # members of each camp named
PER_MODEL = PER_MODEL_META  # the predictions' metadata read per model


def predictions(inputs: Sequence[Any]) -> tuple[str, np.ndarray, list[str], dict[str, np.ndarray], bool] | None:
    """``(name, disagreement [n, n], model_ids, per_model, values)`` of the fingerprint of what the models predict
    on the in-distribution probes (a distance fingerprint whose metadata says ``probe_set: in_dist`` and
    ``predicts: classes``, or ``predicts: values`` with each model's ``spread``, the disagreement extractor's
    version 7: a regression's RMS differences, read in units of that spread; ``per_model``: its metadata's
    :data:`PER_MODEL` figures ``[n]``, those it has), or ``None``."""
    for f in inputs:
        meta = f.meta or {}
        if (f.values is None or meta.get("output") != "distances" or (meta.get("params") or {}).get("probe_set") != IN_DIST
                or meta.get("predicts") not in ("classes", "values")):
            continue
        per_model = {k: np.asarray(meta[k], dtype=np.float64) for k in PER_MODEL
                     if meta.get(k) is not None and len(meta[k]) == len(f.model_ids)}
        values = meta["predicts"] == "values"
        if values and "spread" not in per_model:  # (before version 7: no scale to read the distances in)
            continue
        return f.name, np.asarray(f.values, dtype=np.float64), [str(m) for m in f.model_ids], per_model, values
    return None


def camps(d: np.ndarray, ids: Sequence[str], basins: dict[str, int], per_model: dict[str, np.ndarray] | None = None,
          values: bool = False) -> dict[str, Any] | None:
    """The median in-distribution disagreement inside each of two camps (``within``, in the camps' order
    0, 1), its models' median disagreement with their nearest camp-mate (``nearest``) and the camps'
    median disagreement (``between``), with their ``sizes`` and first :data:`NAMED` ``members`` on the
    models ``d`` holds; with ``per_model`` (:func:`predictions`), each camp's median share of its models'
    most frequent class (``modal``), the disagreement two of its models would have by chance, predicting
    their classes at random (``chance``: one minus the median ``concentration``), and how far its models'
    log-probabilities move with the input (``spread``, the median). With ``values`` (a regression's RMS differences,
    ``per_model`` holding its outputs' ``spread``), ``within``, ``nearest`` and ``between`` are in units of the
    larger camp's spread (``scale``, in the outputs' own units; ``predicts`` "values"), so that the bounds of the
    predicted classes' shares read them (0.2: the camps' outputs 20% of that spread apart). ``None`` unless there
    are two camps of two models or more (or, with ``values``, a camp whose outputs move)."""
    pos = {m: i for i, m in enumerate(ids)}
    lab = {int(b) for b in basins.values()}
    if lab != {0, 1}:
        return None
    rows = [np.asarray([pos[m] for m, b in basins.items() if int(b) == k and m in pos], dtype=int) for k in (0, 1)]
    if min(len(r) for r in rows) < 2:
        return None

    def inside(r: np.ndarray) -> np.ndarray:  # [k, k - 1]: each model's disagreement with the others of its camp
        block = d[np.ix_(r, r)]
        return block[~np.eye(len(r), dtype=bool)].reshape(len(r), len(r) - 1)

    out = {"sizes": [len(r) for r in rows], "within": [float(np.median(inside(r))) for r in rows],
           "nearest": [float(np.median(inside(r).min(1))) for r in rows],
           "between": float(np.median(d[np.ix_(rows[0], rows[1])])),
           "members": [sorted((ids[i] for i in r), key=natural_key)[:NAMED] for r in rows]}
    per_model = per_model or {}
    if "modal_share" in per_model:
        out["modal"] = [float(np.nanmedian(per_model["modal_share"][r])) for r in rows]
    if "concentration" in per_model:
        out["chance"] = [1.0 - float(np.nanmedian(per_model["concentration"][r])) for r in rows]
    if "spread" in per_model:
        out["spread"] = [float(np.nanmedian(per_model["spread"][r])) for r in rows]
    if values:
        scale = max(out.get("spread") or [0.0])
        if not scale > 0:
            return None
        out.update(predicts="values", scale=scale, between=out["between"] / scale,
                   **{k: [v / scale for v in out[k]] for k in ("within", "nearest")})
    return out


def agrees_with_nothing(stats: dict[str, Any] | None) -> int | None:
    """The camp (0 or 1) of :func:`camps` ``stats`` whose models predict other classes than the other camp's on
    at least :data:`DIFFERENT` of the in-distribution probes, and :data:`OTHERS` times as often as those
    differ among themselves, while each of its models' nearest camp-mate differs from it at least
    :data:`ALIKE` as often: models that learned nothing in common with the rest, nor with each other (two
    minority goals in one camp have a near mate each: audit 95); or, moving their outputs at least
    :data:`ERRATIC_SPREAD` times as far as the other camp's, at least :data:`ERRATIC` as often (a harder goal learned in part moves them less: audit
    95's, 8-10 nats against 18); or, its outputs moving as little as :func:`flat`'s (under :data:`FLAT_NATS`, at most
    :data:`FLAT` as far as the other camp's), predicting other classes on at least :data:`QUIET_DIFFERENT` of the
    probes, each model's nearest mate at least :data:`QUIET_ALONE` as far (outside audit 115: 3 models at a learning
    rate of 2e-5 among 60, accuracy 0.76-0.90, 19% apart, nearest mates 21%). ``None`` when no camp is such. Whether they
    agree with nothing at all or learned the task less well (:func:`near_chance`) is the answer's to say."""
    if not stats:
        return None
    within, between, nearest = stats["within"], stats["between"], stats.get("nearest", stats["within"])
    spread = stats.get("spread")
    for k in (0, 1):
        if between < max(DIFFERENT, OTHERS * within[1 - k]):
            continue
        if nearest[k] >= ALIKE * between:
            return k
        if spread is not None and spread[k] >= ERRATIC_SPREAD * spread[1 - k] and nearest[k] >= ERRATIC * between:
            return k  # more confident than the trained camp, and mostly alone in it: erratic, not a goal learned less well
    for k in (0, 1):  # quiet: outputs that barely move, other classes on fewer probes, no near mate (audit 115)
        if spread is not None and spread[k] < FLAT_NATS and spread[k] <= FLAT * spread[1 - k] \
                and between >= max(QUIET_DIFFERENT, OTHERS * within[1 - k]) and nearest[k] >= QUIET_ALONE * between:
            return k
    return None


def diverged(stats: dict[str, Any] | None) -> int | None:
    """The camp (0 or 1) of :func:`camps` ``stats`` whose log-probabilities move with the input at least
    :data:`DIVERGED` times as far as the other camp's, and :data:`DIVERGED_NATS` or more: outputs blown up by
    a run that diverged, whatever classes they predict (audit 97: on a binary task whose positives the
    in-distribution probes hardly hold, every model predicted the negative class, and 6 models at a learning
    rate of 1.0, logits near 26,000, moved 2,419 nats against 7.9, a candidate of the weights' fingerprints),
    when every model predicts one class or the camp's models have no near mate of their own, and the other camp
    moves at least :data:`FLAT_NATS` (review 97: a real minority of larger logits, a temperature below 1, agrees
    with itself; beside collapsed models, healthy ones move far further). ``None`` when no camp is such."""
    if not stats or "spread" not in stats:
        return None
    s, m, between = stats["spread"], stats.get("modal"), stats["between"]
    nearest = stats.get("nearest", stats["within"])
    one = m is not None and min(m) >= ONE_CLASS  # the predictions tell nothing: every model one class
    values = stats.get("predicts") == "values"  # (a regression's outputs: no nats, no classes)
    for k in (0, 1):
        alone = between >= DIFFERENT and nearest[k] >= ERRATIC * between  # no near mate of its own
        far = s[1 - k] > 0 if values else s[k] >= DIVERGED_NATS and s[1 - k] >= FLAT_NATS
        if far and s[k] >= DIVERGED * s[1 - k] and (one or alone):
            return k
    return None


def near_chance(stats: dict[str, Any], k: int) -> bool:
    """Whether camp ``k``'s models differ among themselves at least :data:`NEAR_CHANCE` as often as models
    predicting their classes at random would (``True`` when that chance is not recorded): models that agree
    with nothing, not models that learned the task less well (review 95: a camp at 75-80% accuracy differs
    among itself more than from the rest, far less than by chance)."""
    chance = stats.get("chance")
    return chance is None or stats["within"][k] >= NEAR_CHANCE * chance[k]


def flat(stats: dict[str, Any] | None) -> int | None:
    """The camp (0 or 1) of :func:`camps` ``stats`` whose outputs do not depend on the input (a training that
    collapsed or never started), or ``None``: either its models' log-probabilities move with the input less
    than :data:`FLAT_NATS` and at most :data:`FLAT` as far as the other camp's, the camps predicting other
    classes on at least :data:`DIFFERENT` of the probes, or (both camps one class, where the predictions cannot
    tell them apart: audit 97's positives of 0.24% that no in-distribution probe held) at most :data:`FLAT_BOTH`
    as far; or they predict one class for at least
    :data:`ONE_CLASS` of the probes (the other camp's not), moving at most :data:`FLAT_ONE` as far.
    Measured on the outside audits' imports: 0-0.27 nats for MLPs, CNNs and a transformer collapsed, stopped
    after 2-5 steps or trained at 1e-5, against 12-23 for trained MLPs and CNNs and 3.8-10 for the
    transformer; GRUs trained 1-5, collapsed 0.48-0.52, one class each. Not flat: a real goal of rare
    classes (3.5-4.7 nats, 98% one class: audit 95's detectors, which a first version, reading only the most
    frequent class's share, called collapsed); a camp whose logits were divided by 30 or trained with label
    smoothing 0.5 (0.42-0.80 nats), whose classes are those of the rest (audit 96: a first version of the
    spread alone demoted such a planted rule and backdoor)."""
    if not stats or "spread" not in stats:
        return None
    s, m, between = stats["spread"], stats.get("modal"), stats["between"]
    if stats.get("predicts") == "values":  # a regression's outputs moving at most FLAT_VALUES as far, the camps apart
        return next((k for k in (0, 1) if s[k] <= FLAT_VALUES * s[1 - k] and between >= DIFFERENT
                     and not coherent(stats, k)), None)
    for k in (0, 1):
        small = s[k] < FLAT_NATS and s[k] <= FLAT * s[1 - k] and not coherent(stats, k)
        both_one = m is not None and min(m) >= ONE_CLASS and s[k] <= FLAT_BOTH * s[1 - k]  # (review 97: a backdoor of
        quiet = small and (between >= DIFFERENT or both_one)  # small logits moved 3-5% where the probes lack its trigger)
        one = m is not None and m[k] >= ONE_CLASS > m[1 - k] and s[k] <= FLAT_ONE * s[1 - k]
        if quiet or one:
            return k
    return None


def coherent(stats: dict[str, Any], k: int) -> bool:
    """Whether camp ``k``'s models agree among themselves far more than chance would have them (at most
    :data:`COHERENT` of it): one function learned by all of them, not models that learned nothing, whatever their
    outputs' spread (audit 99: 6 digits models of another label map trained with label smoothing 0.95, 2.3% apart
    among themselves where chance gives 89%, and 6 regressions of a target a tenth the scale, were read as flat). For
    classes, chance is two models predicting their classes at random (``chance``), and a camp of one class (``modal``
    at least :data:`ONE_CLASS`: every collapsed camp of the audits) is never coherent so; for a regression's values,
    two functions of the camp's spread uncorrelated (the square root of 2 times it, in the same units)."""
    if stats.get("predicts") == "values":
        own = stats["spread"][k] / stats["scale"]
        return own > 0 and stats["within"][k] <= COHERENT * np.sqrt(2.0) * own
    chance, modal = stats.get("chance"), stats.get("modal")
    if chance is None or (modal is not None and modal[k] >= ONE_CLASS):
        return False
    return stats["within"][k] <= COHERENT * chance[k]


def differ_in_distribution(stats: dict[str, Any] | None) -> bool:
    """Whether :func:`camps` ``stats`` say the camps predict other classes on at least :data:`DIFFERENT` of the
    in-distribution probes, :data:`OTHERS` times as often as either camp's models differ among themselves: two
    functions of inputs like the training data's (another goal, or a failure one camp shares, such as a class
    predicted for every input), where two rules that agree on the training data would predict alike."""
    return bool(stats) and stats["between"] >= max(DIFFERENT, OTHERS * max(stats["within"]))


def attach(results: Sequence[Any], inputs: Sequence[Any]) -> None:
    """Each result's candidate basins (``label_free["candidate_basins"]``) given :func:`camps` of the
    in-distribution predictions, as ``label_free["in_dist_camps"]`` (with the ``fingerprint`` they come
    from), or without them the camps its significant tests were held back on (``held_basins``), as
    ``label_free["held_camps"]``; and with three clusters or more of its own, each cluster of two models or more
    against the largest (``label_free["cluster_camps"]``: ``fingerprint``, ``largest``, ``parts`` each with its
    ``cluster``). Nothing when no fingerprint of those predictions was analysed."""
    found = predictions(inputs)
    if found is None:
        return
    name, d, ids, per_model, values = found
    held = set(ids)
    for r in results:
        free = r.label_free or {}
        # a deep verdict's candidate basins, else the camps of a significant test held back ("held_basins": no gap, or
        # beside a few models: audit 98's 6 failed one-output regressions read as "the seeds' own noise")
        key = "in_dist_camps" if free.get("candidate_basins") else "held_camps"
        basins = {str(m): int(b) for m, b in (free.get("candidate_basins") or free.get("held_basins") or {}).items()
                  if int(b) >= 0 and str(m) in held}  # the models the predictions hold
        labels = sorted(set(basins.values()))
        if len(labels) == 2:  # (two basins, whatever their labels: camps 0 and 1 in their order)
            stats = camps(d, ids, {m: labels.index(b) for m, b in basins.items()}, per_model, values)
        else:
            stats = _several(d, ids, basins, per_model, values)
        if stats is not None:
            r.label_free[key] = {**stats, "fingerprint": name}
        # the fingerprint's own clusters (k >= 3), each read against the largest: failed models inside a real camp
        # (audit 99's F5: 3 dead and 3 never-started regressions beside a real minority of 6, one camp of 12)
        # (a cluster of one model is read by none, and the others are read all the same)
        own = {str(m): int(c) for m, c in zip(r.model_ids or (), r.clusters or ()) if int(c) >= 0 and str(m) in held}
        if len(set(own.values())) >= 3:
            largest, each = _parts(d, ids, own, per_model, values)
            parts = [{**p, "cluster": k} for k, p in each.items() if p is not None]
            if parts:
                r.label_free["cluster_camps"] = {"fingerprint": name, "largest": largest, "parts": parts}


def _parts(d: np.ndarray, ids: Sequence[str], basins: dict[str, int], per_model: dict[str, np.ndarray],
           values: bool = False) -> tuple[int, dict[int, dict[str, Any] | None]]:
    """The largest basin of ``basins`` (model id -> basin, of the models ``d`` holds) and each other basin's
    :func:`camps` against it (camp 0 the largest, camp 1 that basin; ``None`` for a basin of one model), in the
    basins' order."""
    labels = sorted(set(basins.values()))
    largest = max(labels, key=lambda b: sum(v == b for v in basins.values()))
    return largest, {k: camps(d, ids, {m: int(b == k) for m, b in basins.items() if b in (largest, k)}, per_model, values)
                     for k in labels if k != largest}


def _several(d: np.ndarray, ids: Sequence[str], basins: dict[str, int], per_model: dict[str, np.ndarray],
             values: bool = False) -> dict[str, Any] | None:
    """:func:`camps` of three basins or more: the largest (camp 0) against the rest together (camp 1), with
    ``parts``, each other basin's own :func:`camps` against the largest (audit 96: 6 failed models split 4 and 2
    beside 26, a candidate of three basins, were never read). ``basins``: of the models ``d`` holds (as
    :func:`attach` passes them). ``None`` for fewer than three basins."""
    if len(set(basins.values())) < 3:
        return None
    largest, each = _parts(d, ids, basins, per_model, values)
    stats = camps(d, ids, {m: int(b != largest) for m, b in basins.items()}, per_model, values)
    if stats is None:
        return None
    parts = list(each.values())
    # a basin of one model is read by none: then the rest together are not said to have failed (review 96)
    return {**stats, "parts": parts if all(p is not None for p in parts) else []}


def confirmed(suspects: set[str], inputs: Sequence[Any]) -> set[str] | None:
    """Of ``suspects`` (models some lead puts in a camp that did not learn), those whose own in-distribution figures
    set them apart from the models of no such camp (the reference, their medians): outputs moving at most
    :data:`FLAT` as far (:data:`FLAT_VALUES` for a regression's values) or at least :data:`DIVERGED` times as far; one
    class predicted (at least :data:`ONE_CLASS` of the probes) where the reference predicts several; or predicting other
    values than the reference on at least :data:`DIFFERENT` of the probes (a regression's: that share of the
    reference's spread) and :data:`OTHERS` times as often as its models differ among themselves, with no near mate (the
    model nearest to it at least :data:`ALIKE` as far, or at least :data:`COHERENT` of what chance gives for its own
    outputs, as :func:`coherent` reads a camp; or :data:`ERRATIC` as far, moving its outputs :data:`ERRATIC_SPREAD`
    times as far); or moving its outputs as little as a flat model (under :data:`FLAT_NATS`, at most :data:`FLAT` as
    far) and predicting other classes on at least :data:`QUIET_DIFFERENT` of the probes, with its nearest model at
    least :data:`ALIKE` as far (audit 115). A model of another rule in a failed camp on one fingerprint (review 95's H2)
    predicts the reference's classes; a model of a real minority goal has its fellows near, and is not taken for flat
    or blown up with one that near. ``None`` without the in-distribution predictions or a reference of two models;
    suspects the predictions do not hold are not confirmed."""
    found = predictions(inputs)
    if found is None:
        return None
    _, d, ids, per_model, values = found
    pos = {m: i for i, m in enumerate(ids)}
    ref = np.asarray([i for m, i in pos.items() if m not in suspects], dtype=int)
    if len(ref) < 2:
        return None
    spread = per_model.get("spread")
    s_ref = float(np.nanmedian(spread[ref])) if spread is not None else None
    scale = s_ref if values else 1.0
    if not scale or not scale > 0:
        return None
    inside = d[np.ix_(ref, ref)][~np.eye(len(ref), dtype=bool)]
    within = float(np.median(inside)) / scale
    modal, conc = per_model.get("modal_share"), per_model.get("concentration")
    one_ref = modal is not None and float(np.nanmedian(modal[ref])) >= ONE_CLASS  # the reference predicts one class
    out = set()
    for m in suspects & set(pos):  # (a model the predictions do not hold cannot be confirmed: it stays)
        i = pos[m]
        ratio = spread[i] / s_ref if spread is not None and s_ref else None
        apart = float(np.median(d[i, ref])) / scale
        nearest = float(np.delete(d[i], i).min()) / scale
        # its own scale: chance for two models predicting its classes at random, two uncorrelated functions of its
        # spread; a mate nearer than COHERENT of it is a fellow of one function (a real minority's, however small or
        # large its outputs: audit 99's label map under label smoothing, review 100)
        own = (np.sqrt(2.0) * spread[i] / scale if values else 1.0 - conc[i] if conc is not None else None)
        fellow = own is not None and own > 0 and nearest <= COHERENT * own
        if ratio is not None and (ratio <= (FLAT_VALUES if values else FLAT) or ratio >= DIVERGED) and not fellow:
            out.add(m)
            continue
        if modal is not None and modal[i] >= ONE_CLASS and not one_ref:  # collapsed to one class (audit 99: with larger logits)
            out.add(m)
            continue
        alone = nearest >= ALIKE * apart or (own is not None and nearest >= COHERENT * own)
        erratic = ratio is not None and ratio >= ERRATIC_SPREAD and nearest >= ERRATIC * apart
        if apart >= max(DIFFERENT, OTHERS * within) and (alone or erratic):
            out.add(m)
        elif not values and ratio is not None and ratio <= FLAT and spread[i] < FLAT_NATS \
                and apart >= max(QUIET_DIFFERENT, OTHERS * within) and nearest >= ALIKE * apart:
            # quiet, apart, no near mate (audit 115). ALIKE, not the camp's QUIET_ALONE: its nearest model is the
            # nearest of all the others, the reference's models too; the camp's reading already decided the failure
            out.add(m)
    return out

