"""Mechanistic fingerprints: what is inside the models (weights, representations, loss landscape).

``weight-stats`` and ``weight-spectra`` are invariant to hidden-unit permutations by construction;
``cka`` compares representations up to rotation and scale; ``aligned-weights`` removes the
permutation symmetry by weight matching to a reference; ``lmc-barrier`` measures the loss barrier on
the straight line between two models; ``gradients`` is an empirical-NTK view (per-example
gradients, randomly projected). Everything is batched over the model axis; the only per-model loop
is scipy's assignment solver inside weight matching (the cost matrices are batched). Longer than
~420 lines: weight matching (its order-free start, the batched ascent and the one-model reference
the tests compare it with) sits beside the extractors that use it (aligned-weights, lmc-barrier).
"""

from __future__ import annotations

import copy
import math
import weakref
from typing import Any

import numpy as np
import torch
from torch.func import grad, vmap

from fingerprint.extractors.common import default_layer, generator, probes
from fingerprint.extractors.mixing import (
    MIX_ROUNDS,
    MIX_TOL,
    canonical_mixing,
    check_member,
    mix_spec,
)
from fingerprint.extractors.shifts import (
    centred_along,
    found_by_trying,
    layer_normalized,
    norm_eps,
)
from fingerprint.extractors.unit_trials import folded
from fingerprint.registry import extractor
from training.core.errors import UserError
from training.families.symmetries import matching_groups

# -- weights -----------------------------------------------------------------------------------------
BALANCE_TOL = 1e-8  # the largest change of a unit's log scale at which balancing stops (float32 weights resolve 6e-8)
BALANCE_ITERATIONS = 5000  # deep stacks converge slowly (80 layers: ~5,000 sweeps); past this, meta says how far off


def _check_groups(params: dict[str, torch.Tensor], groups: dict[str, list[tuple[str, int]]]) -> dict[str, int]:
    """``{group: units}`` of rescalable ``groups`` after checking them (a module may declare its own): every
    member a parameter, axis 0 (incoming), 1 (outgoing) or -1 (outgoing, as rows: the other side of a
    bilinear form, e.g. attention's keys against its queries), no (parameter, axis) in two groups and no
    parameter's rows in two, and every member's axis of the group's size (an outgoing axis may hold whole
    blocks of it: a Linear after a flattened Conv reads each channel's ``H*W`` columns together). One-line
    errors name the culprit."""
    units, seen = {}, {}
    for g, members in groups.items():
        for p, a in members:
            where = check_member(params, "hidden_rescalable", g, p, a)
            key = (p, max(a, 0))  # axis -1 is a parameter's rows, like axis 0
            if key in seen:
                raise UserError(f"{where}, already in group '{seen[key]}'")
            seen[key] = g
        incoming = [params[p].shape[1] for p, a in members if a == 0]
        if not incoming:  # a scale with no incoming side to take it back would change the function
            raise UserError(f"hidden_rescalable() group '{g}' has no incoming member (axis 0): a unit's scale must "
                            f"multiply one side and divide the other (members: {members})")
        units[g] = incoming[0]
        for p, a in members:
            n = params[p].shape[1 + max(a, 0)]
            if n != units[g] and not (a == 1 and n % units[g] == 0):
                raise UserError(f"hidden_rescalable() group '{g}': '{p}' axis {a} has {n} entries, the group's other "
                                f"members {units[g]} units")
    return units


def balance_units(params: dict[str, torch.Tensor], groups: dict[str, list[tuple[str, int]]]
                  ) -> tuple[dict[str, torch.Tensor], float]:
    """``(params, residual)``: ``params`` (each ``[n, ...]``) with the hidden units of ``groups``
    (``Family.hidden_rescalable``: group -> [(param, axis)], axis 0 the unit's incoming weights and
    bias, axis 1 its outgoing weights, possibly in blocks, axis -1 outgoing weights and bias stored as
    rows: :func:`_check_groups`) rescaled so that
    each unit's incoming and outgoing weights have equal norms. The function is unchanged (a
    positively homogeneous activation passes the scale), and every positive rescaling of a model's
    units gives the same balanced weights: the unique point of its orbit with the least total
    squared norm. A unit that a rescaling cannot balance because one side is all zero (a dead unit:
    the function does not read its other side) gets that other side's norm set to 1, which every
    rescaling of it reaches too. Block coordinate descent over the groups: each step balances one
    group's units exactly given its neighbours' scales (neighbouring groups share a matrix, so it
    repeats until no unit's log scale moves by more than :data:`BALANCE_TOL`, at most
    :data:`BALANCE_ITERATIONS` times; ``residual`` is the last sweep's largest move, 0 when
    converged), on the squared weights summed to ``[n, out, units]`` (a matrix-vector product per
    group and sweep) with float64 scales, all models at once; the weights are scaled once at the
    end, in their own dtype. Other entries are returned unchanged."""
    if not groups:
        return params, 0.0
    units = _check_groups(params, groups)
    row_of = {p: g for g, members in groups.items() for p, a in members if a != 1}  # whose units its axis 0 holds
    col_of = {p: g for g, members in groups.items() for p, a in members if a == 1}  # ... and its axis 1
    divided = {p for members in groups.values() for p, a in members if a == -1}  # rows divided by the unit's scale
    touched = set(row_of) | set(col_of)
    sq = {}  # [n, out] (a bias) or [n, out, in]: squared entries summed over a kernel's other axes and column blocks
    for p in touched:
        w = params[p]
        if w.dim() == 2:
            sq[p] = w.double().pow(2)
            continue
        m = w.reshape(*w.shape[:3], -1).double().pow(2).sum(-1)  # [n, out, in]; float64 (a diverged model's 1e20 squared)
        if p in col_of and m.shape[2] != units[col_of[p]]:  # a flattened Conv's channels: blocks of columns
            m = m.reshape(m.shape[0], m.shape[1], units[col_of[p]], -1).sum(-1)
        sq[p] = m
    n, device = next(iter(sq.values())).shape[0], next(iter(sq.values())).device
    s = {g: torch.ones(n, units[g], dtype=torch.float64, device=device) for g in groups}  # each unit's squared scale

    def norms(g: str) -> tuple[torch.Tensor, torch.Tensor]:  # [n, units] incoming and outgoing, g's own scale left out
        inc = torch.zeros(n, units[g], dtype=torch.float64, device=device)
        out = torch.zeros_like(inc)
        for p, a in groups[g]:
            q = sq[p]
            if a != 1:  # rows: incoming (axis 0) or outgoing (-1)
                rows = q if q.dim() == 2 else (q @ (1 / s[col_of[p]])[..., None])[..., 0] if p in col_of else q.sum(-1)
                if a == 0:
                    inc += rows
                else:
                    out += rows
            elif p in row_of:  # its rows are another group's units, scaled (or divided) by theirs
                rows_scale = 1 / s[row_of[p]] if p in divided else s[row_of[p]]
                out += (rows_scale[:, None, :] @ q)[:, 0]
            else:
                out += q.sum(1)
        return inc, out

    residual = 0.0
    for _ in range(BALANCE_ITERATIONS):
        residual = 0.0
        for g in groups:
            inc, out = norms(g)
            # s * inc = out / s balances a live unit; a dead one's other side goes to norm 1
            new = torch.where((inc > 0) & (out > 0), (out / inc.clamp_min(1e-300)).sqrt(),
                              torch.where(inc > 0, 1 / inc.clamp_min(1e-300), torch.where(out > 0, out, s[g])))
            residual = max(residual, float(0.5 * (new / s[g]).log().abs().max()))  # log c moves by half of log s
            s[g] = new
        if residual <= BALANCE_TOL:
            residual = 0.0
            break
    out = dict(params)
    for p in touched:
        w = params[p]
        for g, a in ((row_of.get(p), 0), (col_of.get(p), 1)):
            if g is not None:
                c = s[g].sqrt() if a == 0 and p not in divided else 1 / s[g].sqrt()  # [n, units]
                if a == 1 and w.shape[2] != units[g]:  # whole blocks of columns per unit
                    c = c.repeat_interleave(w.shape[2] // units[g], dim=1)
                shape = [n] + [1] * (w.dim() - 1)
                shape[1 + a] = c.shape[1]
                w = w * c.reshape(shape).to(w.dtype)
        out[p] = w
    return out, residual


def normalize_units(params: dict[str, torch.Tensor], groups: dict[str, dict]) -> dict[str, torch.Tensor]:
    """``params`` with every layer that a norm normalizes again (``Family.hidden_normalized``) at one
    point of its free scale: each unit's incoming weights and bias (a batch norm's, ``per_unit``)
    divided by their norm, or the whole layer's (a layer norm's) by their root mean square over its
    units (so a wide layer's activations do not shrink towards the norm's ``eps``), and the batch
    norm's running statistics by the same factor to their ``power`` (mean 1, variance 2), so the model
    computes what it did (exactly when the spec gives the norm's ``eps``); float64, all models at once. A model and any
    positive rescaling of those units give the same tensors. A unit (or layer) whose incoming weights
    are all zero is left as it is."""
    out = dict(params)
    for spec in groups.values():
        inc = [p for p, _ in spec["incoming"] if p in out]
        if not inc:
            continue
        if not spec["per_unit"]:  # a layer norm's layer: one scale (no running statistics)
            out.update(zip(inc, layer_normalized([out[p] for p in inc])))
            continue
        n, units = out[inc[0]].shape[:2]
        sq = sum(out[p].double().pow(2).reshape(n, units, -1).sum(2) for p in inc)  # [n, units]
        c = sq.sqrt()
        c = torch.where(c > 0, c, torch.ones_like(c))
        eps = float(spec.get("eps", 0.0))  # a variance's: (var + eps) / c**2 - eps keeps sqrt(var + eps) / c exact
        for p, power in [(p, 1) for p in inc] + [(p, k) for p, k in spec["stats"] if p in out]:
            w = out[p]  # [n, units, ...] divided by c**power, unit by unit
            shift = eps if power == 2 else 0.0
            out[p] = ((w.double() + shift) / c.pow(power).reshape(n, c.shape[1], *[1] * (w.dim() - 2)) - shift).to(w.dtype)
    return out


def centre_shifts(params: dict[str, torch.Tensor], shiftable: list[tuple[str, int]] | tuple = (),
                  normalized: dict[str, dict] | None = None) -> dict[str, torch.Tensor]:
    """``params`` with the shifts the function cannot see put at one point: the softmax outputs'
    (``Family.output_shiftable``: each entry minus its mean over the class axis, so one vector added to
    every class's weight row and one number to every bias are gone) and those a norm removes
    (``Family.hidden_normalized``'s ``"shift"``: a layer norm's layer centred over its units the same
    way; a batch norm's running mean folded into the layer's bias, ``bias - running_mean``, the mean
    then 0). Float64, cast back; all models at once. A model and any such shift of it give the same
    tensors (an outside audit of the fifteenth session: an output bias started at the log class prior,
    or shifted before a layer or batch norm, read as a candidate deep difference on weight-stats at 8-16 SDs)."""
    out = dict(params)

    for p, axis in shiftable:
        if p in out:
            out[p] = centred_along(out[p], axis)
    for spec in (normalized or {}).values():
        moved = [p for p in _shifted(spec) if p in out]
        if spec.get("shift") and spec["shift"]["kind"] == "layer":
            for p in moved:
                out[p] = centred_along(out[p], 0)
        elif len(moved) == 2:  # a batch norm's: the layer's bias and the norm's running mean
            (bias, b), (mean, m) = ((p, out[p]) for p in moved)
            out[bias] = (b.double() - m.double()).to(b.dtype)
            out[mean] = torch.zeros_like(m)
    return out


def _shifted(spec: dict) -> list[str]:
    """The entries :func:`centre_shifts` moves for one ``hidden_normalized`` layer: a layer norm's layer's
    incoming ones; a batch norm's layer's bias and the norm's running mean (none without a bias)."""
    shift = spec.get("shift")
    if not shift:
        return []
    if shift["kind"] == "layer":
        return [p for p, _ in spec["incoming"]]
    bias = [p for p, _ in spec["incoming"] if p.endswith(".bias")]
    return bias + [shift["mean"]] if bias else []


NORM_ROUNDS = 200  # alternations of normalizing and balancing where the two scales meet (a ReLU group into a normed layer)


def canonical_scales(params: dict[str, torch.Tensor], groups: dict[str, list[tuple[str, int]]],
                     normalized: dict[str, dict], shiftable: list[tuple[str, int]] | tuple = (),
                     mixable: dict[str, list | dict] | None = None, summed: tuple = ()
                     ) -> tuple[dict[str, torch.Tensor], float | None]:
    """``params`` with both free scales taken out: the layers a norm follows normalized
    (:func:`normalize_units`) and the ReLU units balanced (:func:`balance_units`). Where the two
    meet (``Linear -> ReLU -> Linear -> BatchNorm``: the ReLU units' outgoing weights are the normed
    layer's incoming ones), one pass of each lands on different points for a model and its rescaled
    copy (a review: weight-stats 0.37 apart for the same function), so they alternate until both hold
    at once (Sinkhorn-like: rows of the normed layer at norm 1, the ReLU units balanced), at most
    :data:`NORM_ROUNDS` times; the residual is then the larger of the two stopping gaps. The shifts
    the function cannot see are centred first (:func:`centre_shifts`): a shift of a unit's bias moves
    its norm, so a model and its shifted twin would otherwise balance differently. Units that mix freely
    (``mixable``, :func:`canonical_mixing`) alternate with both scales, each step lowering the weights'
    total squared norm, until a round of mixing moves no weight by :data:`MIX_TOL` of its tensor's
    largest (at most :data:`MIX_ROUNDS`): one pass of each lands a model and its rescaled twin on
    different points (a review of the fifteenth session: weight-stats 0.37 apart). Entries the function
    reads only through their sum (``summed``, found by trying them) are folded into one of the two first."""
    for p, q, entries in summed:  # entries read only through a sum: all in the first (unit_trials.folded)
        params = dict(params) | folded(params, p, q, entries)
    if shiftable or any(spec.get("shift") for spec in normalized.values()):
        params = centre_shifts(params, shiftable, normalized)
    if not mixable:
        return _scaled(params, groups, normalized)
    names = sorted({m.param for spec in mixable.values() for m in mix_spec(spec)[0]})
    dtypes = {k: v.dtype for k, v in params.items()}
    params = {k: v.double() if v.is_floating_point() else v for k, v in params.items()}  # float32's rounding would not settle
    residual: float | None = None
    for _ in range(MIX_ROUNDS):
        mixed = canonical_mixing(params, mixable)
        moved = max(float((mixed[p] - params[p]).abs().max() / params[p].abs().max().clamp_min(1e-30)) for p in names)
        params, residual = _scaled(mixed, groups, normalized)
        if moved < MIX_TOL or not (groups or normalized or len(mixable) > 1):
            break
    else:
        residual = max(residual or 0.0, moved)
    return {k: v.to(dtypes[k]) for k, v in params.items()}, residual


def _scaled(params: dict[str, torch.Tensor], groups: dict[str, list[tuple[str, int]]],
            normalized: dict[str, dict]) -> tuple[dict[str, torch.Tensor], float | None]:
    """:func:`canonical_scales` after the shifts and without the mixing: the two free scales."""
    if not normalized:
        return balance_units(params, groups) if groups else (params, None)
    out = normalize_units(params, normalized)
    if not groups:
        return out, None
    normed = {p for spec in normalized.values() for p, _ in spec["incoming"]}
    meet = any(p in normed for members in groups.values() for p, _ in members)
    out, residual = balance_units(out, groups)
    for _ in range(NORM_ROUNDS if meet else 0):
        again = normalize_units(out, normalized)
        moved = max(float(((again[p].double() - out[p].double()).abs().max() / out[p].double().abs().max().clamp_min(1e-30)))
                    for p in normed if p in out)
        out, residual = balance_units(again, groups)
        if moved < 1e-7:
            break
    else:
        if meet:
            residual = max(residual or 0.0, moved)
    return out, residual


class _LastBalanced:
    """The last :func:`canonical_scales` result, reused while its inputs are the very same tensors,
    unedited: the four balanced fingerprints of one ``extract`` call (weight-stats, weight-spectra,
    aligned-weights, cka) read one batch of parameters, and balancing a large population costs more
    than any of them (1,024 MLPs of width 64 and depth 8: ~9 s each). Keyed on the groups and each
    tensor's identity (a weak reference) and version (``_version``: an in-place edit moves it). It
    holds the balanced tensors (and, through them, the batch's unbalanced ones) until the next
    batch or :meth:`clear`, which ``extract`` calls when it is done."""

    def __init__(self) -> None:
        self.refs: dict[str, Any] = {}
        self.versions: dict[str, int] = {}
        self.key: str | None = None  # the groups and normalized layers it was computed for
        self.result: tuple[dict[str, torch.Tensor], float | None] | None = None

    def get(self, params: dict[str, torch.Tensor], groups: dict, normalized: dict | None = None,
            shiftable: list[tuple[str, int]] | tuple = (), mixable: dict | None = None, summed: tuple = ()
            ) -> tuple[dict[str, torch.Tensor], float | None]:
        key = repr((sorted((g, list(m)) for g, m in groups.items()), sorted((normalized or {}).items()), list(shiftable),
                    sorted((mixable or {}).items()), list(summed)))
        same = (self.result is not None and key == self.key and self.refs.keys() == params.keys()
                and all(self.refs[k]() is v and self.versions[k] == v._version for k, v in params.items()))
        if not same:
            self.clear()  # the old copy goes before the new one is made
            self.result = canonical_scales(params, groups, normalized or {}, shiftable, mixable, summed)
            self.refs, self.key = {k: weakref.ref(v) for k, v in params.items()}, key
            self.versions = {k: v._version for k, v in params.items()}
        return self.result

    def clear(self) -> None:
        self.result, self.refs, self.versions, self.key = None, {}, {}, None


def forget_balanced() -> None:
    """Let go of the last balanced parameters (:class:`_LastBalanced`); ``extract`` calls it when done."""
    _LAST.clear()


_LAST = _LastBalanced()


def _canonical(models, balance: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The models' parameters with their free scales taken out (:func:`canonical_scales`) when ``balance``
    and the family declares or infers any (rescalable units, ``hidden_rescalable``; layers a norm follows,
    ``hidden_normalized``), and the metadata that says which (``{"balanced": [group, ...], "normalized":
    [layer, ...]}``, ``balance_residual`` when it stopped short). The tensors are shared with
    the next extractor that reads the same batch (:class:`_LastBalanced`): read them, never edit them."""
    groups = models.family.hidden_rescalable() if balance else {}
    normalized = models.family.hidden_normalized() if balance else {}
    declared = [] if not balance or models.task.regression() else [
        (p, a) for p, a in models.family.output_shiftable() if p in models.params]  # a regression's outputs are no logits
    found = found_by_trying(models) if balance else None
    shiftable = sorted(set(declared) | set(found.shifts)) if found else []
    mixable = models.family.hidden_mixable() if balance else {}
    if found:  # layers a norm reads inside a module's own forward: normalized like the declared ones
        normalized = _add_normalized(normalized, {layer: {"incoming": [(p, 0) for p in ps], "stats": [], "per_unit": False,
                                                          "shift": None} for layer, ps in found.scales})
        normalized = _add_normalized(normalized, {
            layer: {"incoming": [(p, 0) for p in ps], "stats": [(mean, 1), (var, 2)], "per_unit": True,
                    "shift": {"kind": "batch", "mean": mean} if shift else None, "eps": norm_eps(models.family, var)}
            for layer, ps, mean, var, shift in found.norms})
        normalized = _add_normalized(normalized, {k: {"incoming": [(k, 0)], "stats": [], "per_unit": True, "shift": None}
                                                  for k in found.rows})  # weight_norm's direction
        mixed = {m.param for spec in mixable.values() for m in mix_spec(spec)[0]}
        groups = _with_found(groups, found.rescalable + found.fanouts, mixed)
        mixable = dict(mixable) | {f"{e}>{w}": {"members": [{"param": e, "axis": 1, "side": "in"},
                                                            {"param": w, "axis": 1, "side": "out"}]}
                                   for e, w in found.mixes if not {e, w} & mixed}
    summed = found.sums if found else ()
    if not groups and not normalized and not shiftable and not mixable and not summed:
        return models.params, {}
    params, residual = _LAST.get(models.params, groups, normalized, shiftable, mixable, summed)
    centred = sorted({p for p, _ in shiftable} | {p for spec in normalized.values() for p in _shifted(spec)} & set(models.params))
    return dict(params), ({"balanced": sorted(groups)} if groups else {}) | (
        {"normalized": sorted(normalized)} if normalized else {}) | ({"centred": centred} if centred else {}) | (
        {"mixed": sorted(mixable)} if mixable else {}) | ({"summed": sorted(f"{p}<{q}" for p, q, _ in summed)} if summed else {}) | (
        {"balance_residual": residual} if residual else {})


def _add_normalized(normalized: dict[str, dict], found: dict[str, dict]) -> dict[str, dict]:
    """``normalized`` and those of ``found`` (``hidden_normalized``'s format, by layer) that name a new layer
    and none of whose incoming weights a layer of ``normalized`` already normalizes."""
    normed = {p for spec in normalized.values() for p, _ in spec["incoming"]}
    return dict(normalized) | {layer: spec for layer, spec in found.items()
                               if layer not in normalized and not {p for p, _ in spec["incoming"]} & normed}


def _with_found(groups: dict[str, list[tuple[str, int]]], found: tuple, mixed: set[str]) -> dict[str, list[tuple[str, int]]]:
    """``groups`` and the rescalable units found by trying them (``shifts.Found.rescalable``) that no
    declared group or mixing (``mixed``: its parameters) already moves: ``{first: [(param, 0), ..., (next, 1)]}`` (a normalized
    layer's weights may be in one: ``weight_norm``'s ``g``, bias and direction ``v``, the direction's
    rows normalized, alternating with the balancing in :func:`canonical_scales`)."""
    rows = {p for members in groups.values() for p, a in members if a != 1} | mixed
    cols = {p for members in groups.values() for p, a in members if a == 1} | mixed
    out = dict(groups)
    for first, ps, second in found:
        readers = second if isinstance(second, tuple) else (second,)  # several: a fan-out (shifts.Found.fanouts)
        if set(ps) & rows or set(readers) & cols:
            continue
        out[first if first not in out else f"{first}>{readers[0]}"] = [(p, 0) for p in ps] + [(r, 1) for r in readers]
        rows |= set(ps)
        cols |= set(readers)
    return out


def _weights(models, name: str, balance: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights a weight-space extractor reads (no buffers; balanced when ``balance``: :func:`_canonical`)
    and the metadata that says what it left out (``{"skipped": {entry: "buffer" | "<dtype> buffer"}}``)
    and which groups it balanced."""
    names = models.weights()
    if not names:
        raise UserError(f"{name}: these models have no weights, only buffers ({', '.join(sorted(models.params))})")
    params, meta = _canonical(models, balance)
    skipped = models.non_weights()
    return {k: params[k] for k in names}, ({"skipped": dict(sorted(skipped.items()))} if skipped else {}) | meta


@extractor("weight-stats", kind="mechanistic", version="7", reads="weights")
def weight_stats(models, quantiles: list = [0.05, 0.25, 0.5, 0.75, 0.95], balance: bool = True):  # noqa: B006 - a plain, hashable default
    """Per weight tensor: mean, std, mean |w|, quantiles, skewness, kurtosis (permutation invariant);
    a one-element weight (a learned scalar) is its value alone. Buffers are left out (``skipped``).
    ``balance`` (version 2): hidden units whose scale moves freely between layers (ReLU) are balanced
    first (:func:`balance_units`), so a model and any rescaling of its units get the same row."""
    q = torch.tensor([float(v) for v in quantiles])
    weights, meta = _weights(models, "weight-stats", balance)
    cols = []
    scalars = []
    for name in sorted(weights):
        w = weights[name].reshape(len(weights[name]), -1).float()  # [n, numel]; a 0-d weight stacks to [n]
        if w.shape[1] == 1:  # no spread to describe: the value itself
            cols.append(w[:, 0])
            scalars.append(name)
            continue
        mu, sd = w.mean(1), w.std(1, unbiased=False).clamp_min(1e-12)
        z = (w - mu[:, None]) / sd[:, None]
        cols += [mu, sd, w.abs().mean(1), z.pow(3).mean(1), z.pow(4).mean(1)]
        if len(q):
            cols += list(torch.quantile(w, q, dim=1))
    if scalars:
        meta["scalars"] = scalars
    return torch.stack(cols, 1), meta


def _matrices(weights: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """Every weight with at least two per-model dims, as ``[n, rows, cols]`` (conv kernels flattened)."""
    return [(k, v.flatten(2) if v.dim() > 3 else v) for k, v in sorted(weights.items()) if v.dim() >= 3]


def _singular_values(m: torch.Tensor) -> torch.Tensor:
    """Singular values ``[n, k]`` (descending) of ``m [n, rows, cols]``, ``k = min(rows, cols)``.

    For small ``k``, the square roots of the eigenvalues of the ``k x k`` Gram matrix in float64:
    ~2x faster than batched SVD for the thin matrices of small models, and within float32 rounding
    of it (the float64 Gram keeps the squared condition number out of float32's range).
    """
    if min(m.shape[1:]) > 32:
        return torch.linalg.svdvals(m)
    a = m.double()
    g = a.mT @ a if a.shape[1] >= a.shape[2] else a @ a.mT
    return torch.linalg.eigvalsh(g).clamp_min(0).sqrt().flip(-1).to(m.dtype)


@extractor("weight-spectra", kind="mechanistic", version="7", reads="weights", bounds={"top_k": (0, None)})
def weight_spectra(models, top_k: int = 16, normalize: bool = False, balance: bool = True):
    """Top singular values of every weight matrix, zero-padded to ``top_k`` (permutation invariant;
    ``balance``, version 2: rescaling invariant too, as ``weight-stats``)."""
    weights, meta = _weights(models, "weight-spectra", balance)
    cols = []
    for _, m in _matrices(weights):
        s = _singular_values(m.float())  # [n, min(rows, cols)]
        if normalize:
            s = s / s.sum(1, keepdim=True).clamp_min(1e-12)
        k = min(top_k, s.shape[1]) if top_k > 0 else s.shape[1]
        cols.append(torch.nn.functional.pad(s[:, :k], (0, max(top_k - k, 0))))
    if not cols:
        raise UserError("weight-spectra: this architecture has no weight matrices")
    return torch.cat(cols, 1), meta


# -- representations ---------------------------------------------------------------------------------
def _grams(acts: torch.Tensor) -> torch.Tensor:
    """``[n, P, d]`` activations -> centred Gram matrices ``[n, P, P]``."""
    x = acts.flatten(2).double()
    x = x - x.mean(1, keepdim=True)
    return x @ x.transpose(1, 2)


def cka_matrix(acts: torch.Tensor, debiased: bool = False) -> torch.Tensor:
    """Pairwise linear CKA ``[n, n]`` between the models' representations ``[n, P, ...]``. A
    representation constant over the probes carries nothing CKA can compare: two such are alike (1),
    one against any other unlike (0) (before, two identical constant ones read 0: a distance of 1)."""
    flat_acts = acts.reshape(acts.shape[0], acts.shape[1], -1)
    spread = (flat_acts - flat_acts.mean(1, keepdim=True)).abs().amax((1, 2))
    constant = spread <= 1e-6 * flat_acts.abs().amax((1, 2))  # [n]; all-zero activations too
    K = _grams(acts)
    n, P, _ = K.shape
    if not debiased:
        flat = K.reshape(n, -1)
        hsic = flat @ flat.T
    else:  # unbiased HSIC estimator (Song et al., 2012), vectorised over all pairs
        if P < 4:
            raise UserError("debiased CKA needs at least 4 probes")
        K = K.clone()
        K.diagonal(dim1=1, dim2=2).zero_()
        flat = K.reshape(n, -1)
        tr = flat @ flat.T  # tr(K L) for symmetric K, L
        s = K.sum((1, 2))  # 1^T K 1
        r = K.sum(2)  # K 1, [n, P]
        hsic = (tr + s[:, None] * s[None, :] / ((P - 1) * (P - 2)) - 2.0 / (P - 2) * (r @ r.T)) / (P * (P - 3))
    d = hsic.diagonal().clamp_min(1e-30).sqrt()
    cka = hsic / (d[:, None] * d[None, :])
    both, either = constant[:, None] & constant[None, :], constant[:, None] | constant[None, :]
    return torch.where(both, torch.ones_like(cka), torch.where(either, torch.zeros_like(cka), cka)).float()


def at_position(models, acts: torch.Tensor, position: str) -> tuple[torch.Tensor, str]:
    """Per-position activations ``[n, P, T, d]`` -> the positions ``position`` names (``"readout"``:
    those the family reads its output from; ``"all"``: every one, joined into one vector per probe;
    an integer such as ``"0"`` or ``"-1"``: that one), ``[n, P, T', d]``, and what was used.
    Activations of any other shape (no position axis) are returned as they are."""
    if position not in ("readout", "all"):
        try:
            index = int(position)
        except ValueError:
            raise UserError(f"parameter 'position' must be readout, all or a position index such as 0 or -1, got {position!r}") from None
    readout = models.family.readout_positions()
    if acts.dim() != 4 or position == "all" or (position == "readout" and readout is None):
        return acts, "all"
    T = acts.shape[2]
    if position == "readout":
        return acts[:, :, readout], ",".join(map(str, readout))
    if not -T <= index < T:
        raise UserError(f"parameter 'position' is {index}, but the activations have {T} positions (valid: {-T} to {T - 1})")
    return acts[:, :, [index]], str(index % T)


@extractor("cka", kind="mechanistic", output="distances", version="8", reads="activations", bounds={"n_probes": (2, None)})
def cka(models, layer: str = "", probe_set: str = "in_dist", n_probes: int = 128, debiased: bool = False,
        position: str = "readout", balance: bool = True):
    """Pairwise 1 - linear CKA of a hidden layer's activations on probes (debiased=True: unbiased HSIC).

    For sequence models, ``position`` picks the token positions compared: ``readout`` (the ones the
    output is read from: the last for a last-position transformer), ``all`` (every position joined
    into one vector per probe, the behaviour before version 2) or one index (``0``, ``-1``).
    ``balance`` (version 3): the activations come from the models with their rescalable units balanced
    (:func:`balance_units`): linear CKA is blind to a rotation and one overall scale, not to each unit's
    own scale, which a ReLU unit moves freely between its layers."""
    layer = layer or default_layer(models)
    x = probes(models, probe_set, n_probes)
    params, balanced = _canonical(models, balance)
    view = models
    if balanced:  # the same models, their units balanced (a shallow copy: the caller's batch keeps its weights)
        view = copy.copy(models)
        view.params = params
    acts, used = at_position(models, view.activations(x, [layer])[layer], position)
    return (1.0 - cka_matrix(acts, debiased)).clamp_min(0.0), {"layer": layer, "position": used, **balanced}


# -- weight matching -----------------------------------------------------------------------------------
def _permute(w: torch.Tensor, axis: int, perm: torch.Tensor) -> torch.Tensor:
    """Permute per-model axis ``axis`` of ``w [n, ...]`` with per-model indices ``perm [n, h]``."""
    shape = [1] * w.dim()
    shape[0], shape[axis + 1] = perm.shape[0], perm.shape[1]
    idx = perm.reshape(shape).expand(*[w.shape[i] if i != axis + 1 else perm.shape[1] for i in range(w.dim())])
    return torch.gather(w, axis + 1, idx)


START = ("invariant", "identity")


def _check_start(start: str) -> None:
    if start not in START:
        raise UserError(f"parameter 'start' must be {' or '.join(START)}, got {start!r}")


def invariant_start(params: dict[str, torch.Tensor], ref: dict[str, torch.Tensor],
                    groups: dict[str, list[tuple[str, int]]]) -> dict[str, torch.Tensor]:
    """Per-model permutations ``{group: [n, h]}`` to start weight matching from, that do not depend
    on the order a model's units happen to be stored in.

    The groups are solved once each, in their declared order (input to output for a sequential
    model); in a group's cost, an axis that belongs to a group already solved is permuted by its
    solution, and an axis of a group not yet solved (or of the group itself) is sorted, per unit, so
    its order cannot matter. Permuting a model's units therefore permutes this start with them (up
    to exact ties), and the coordinate ascent from it ends at the same aligned weights; from the
    identity, where it ends depends on the stored order (an exact permuted copy of a model was
    aligned 0.1-0.18 mean |w| away from the model itself, the weights' mean |w| being 0.16).
    """
    from scipy.optimize import linear_sum_assignment  # deferred: start-up cost

    n = next(iter(params.values())).shape[0]
    axis_group = {(p, ax): g for g, members in groups.items() for p, ax in members}
    perms: dict[str, torch.Tensor] = {}
    for g, members in groups.items():
        h = params[members[0][0]].shape[members[0][1] + 1]
        cost = torch.zeros(n, h, h, dtype=torch.float64)
        for p, ax in members:
            w, r = params[p].double(), ref[p].double()
            for other_ax in range(w.dim() - 1):
                og = axis_group.get((p, other_ax))
                if other_ax == ax or og is None:
                    continue
                if og in perms and og != g:
                    w = _permute(w, other_ax, perms[og])
                else:  # order-free: each unit's values along that axis, sorted
                    w = w.movedim(other_ax + 1, -1).sort(-1).values.movedim(-1, other_ax + 1)
                    r = r.movedim(other_ax + 1, -1).sort(-1).values.movedim(-1, other_ax + 1)
            cost += r.movedim(ax + 1, 1).reshape(1, h, -1) @ w.movedim(ax + 1, 1).reshape(n, h, -1).transpose(1, 2)
        perms[g] = torch.from_numpy(np.stack([linear_sum_assignment(c, maximize=True)[1] for c in cost.numpy()]))
    return perms


def weight_match(params: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], groups: dict[str, list[tuple[str, int]]],
                 iterations: int = 10, seed: int = 0, start: str = "invariant") -> dict[str, torch.Tensor]:
    """Per-model permutations ``{group: [n, h]}`` aligning each model to ``ref`` (git re-basin weight matching).

    Coordinate ascent: each round visits the groups in a random order and solves, per model, the
    assignment of that group's units given the others' current permutations; it stops after a round
    that changes nothing. A group is re-solved for a model only when a permutation its cost depends
    on changed for that model since it was last solved (otherwise the same cost matrix would give
    the same answer), so the result is that of re-solving everything, at a fraction of the calls.
    It starts from :func:`invariant_start` (``start="invariant"``), or from the identity
    (``"identity"``, before aligned-weights version 2), which makes the result depend on the order
    of each model's stored units.
    """
    from scipy.optimize import linear_sum_assignment

    _check_start(start)
    n = next(iter(params.values())).shape[0]
    sizes = {g: params[members[0][0]].shape[members[0][1] + 1] for g, members in groups.items()}
    if start == "invariant":
        perms = invariant_start(params, ref, groups)
    else:
        perms = {g: torch.arange(h).expand(n, h).clone() for g, h in sizes.items()}
    axis_group = {(p, ax): g for g, members in groups.items() for p, ax in members}
    # the groups whose cost reads group g's permutation (through another axis of a shared parameter)
    readers = {g: {og for og, members in groups.items() for p, ax in members
                   for other_ax in range(params[p].dim() - 1) if other_ax != ax and axis_group.get((p, other_ax)) == g}
               for g in groups}
    stale = {g: torch.ones(n, dtype=torch.bool) for g in groups}  # must (re)solve group g for model j
    rs = np.random.default_rng(seed)
    for _ in range(iterations):
        changed = False
        for g in rs.permutation(list(groups)):
            idx = stale[g].nonzero().flatten()
            if not len(idx):
                continue
            h = sizes[g]
            cost = torch.zeros(len(idx), h, h, dtype=torch.float64)
            for p, ax in groups[g]:
                w = params[p][idx]
                for other_ax in range(w.dim() - 1):  # apply the other groups' current permutations
                    og = axis_group.get((p, other_ax))
                    if og is not None and og != g:
                        w = _permute(w, other_ax, perms[og][idx])
                a = ref[p].movedim(ax + 1, 1).reshape(1, h, -1).double()
                b = w.movedim(ax + 1, 1).reshape(len(idx), h, -1).double()
                cost += a @ b.transpose(1, 2)  # [m, h_ref, h_model]
            new = torch.from_numpy(np.stack([linear_sum_assignment(c, maximize=True)[1] for c in cost.numpy()]))
            moved = (new != perms[g][idx]).any(1)
            perms[g][idx] = new
            stale[g][idx] = False
            if moved.any():
                changed = True
                for og in readers[g]:
                    stale[og][idx[moved]] = True
        if not changed:
            break
    return perms


# weight matching's cost, measured on this project's Intel host (one core, 16 trained MLPs of three
# 1,024-unit layers: 344 assignments of 0.16 s each and their cost matrices, 85 s; docs/benchmarks.md)
ASSIGNMENT_SECONDS = 1.5e-10  # per h^3 of one assignment of h units
COST_SECONDS = 5e-11  # per h^2 * fan of a cost matrix (double precision)
MATCH_ROUNDS = 7  # solves per model and group, measured there (the ascent re-solves only what changed)


def matching_seconds(shapes: dict[str, tuple[int, ...]], groups: dict[str, list[tuple[str, int]]], n_models: int) -> float:
    """About how long :func:`weight_match` takes for ``n_models`` models of per-model parameter
    ``shapes`` with permutation ``groups``, on one core: each group of ``h`` units solves an
    ``h x h`` assignment (``h^3``) from a cost matrix over the group's tensors (``h^2`` times their
    other axes) about :data:`MATCH_ROUNDS` times per model. It grows as the cube of the widest layer:
    16 models of three 2,048-unit layers take about 12 minutes."""
    total = 0.0
    for members in groups.values():
        p, ax = members[0]
        h = int(shapes[p][ax])
        fan = sum(math.prod(shapes[q]) // max(int(shapes[q][a]), 1) for q, a in members)
        total += ASSIGNMENT_SECONDS * h**3 + COST_SECONDS * h * h * fan
    return n_models * MATCH_ROUNDS * total


def matching_cost(shapes: dict[str, tuple[int, ...]], groups: dict[str, list[tuple[str, int]]], n_models: int
                  ) -> tuple[float, int] | None:
    """``(seconds, widest)``: :func:`matching_seconds` and the units of the widest group, or ``None`` when the
    groups name a tensor or an axis the shapes lack (the matching says so itself when it runs)."""
    try:
        return matching_seconds(shapes, groups, n_models), max(int(shapes[m[0][0]][m[0][1]]) for m in groups.values())
    except (KeyError, IndexError, ValueError):
        return None


def weight_match_one(w: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], groups: dict[str, list[tuple[str, int]]],
                     iterations: int = 10, seed: int = 0, start: str = "invariant") -> dict[str, torch.Tensor]:
    """One model's permutations ``{group: [h]}`` aligning ``w`` to ``ref`` (both one model's
    ``{name: tensor}``, ``nn.Module`` shapes): the plain coordinate ascent, every group re-solved
    every round, that :func:`weight_match` computes for a whole population."""
    from scipy.optimize import linear_sum_assignment

    _check_start(start)
    axis_group = {(p, ax): g for g, members in groups.items() for p, ax in members}
    if start == "invariant":
        one = invariant_start({k: v[None] for k, v in w.items()}, {k: v[None] for k, v in ref.items()}, groups)
        perms = {g: p[0] for g, p in one.items()}
    else:
        perms = {g: torch.arange(w[members[0][0]].shape[members[0][1]]) for g, members in groups.items()}
    rs = np.random.default_rng(seed)
    for _ in range(iterations):
        changed = False
        for g in rs.permutation(list(groups)):
            h = len(perms[g])
            cost = torch.zeros(h, h, dtype=torch.float64)
            for p, ax in groups[g]:
                wp = w[p]
                for other in range(wp.dim()):  # the other groups' current permutations
                    og = axis_group.get((p, other))
                    if og is not None and og != g:
                        wp = wp.index_select(other, perms[og])
                cost += ref[p].movedim(ax, 0).reshape(h, -1).double() @ wp.movedim(ax, 0).reshape(h, -1).double().T
            new = torch.as_tensor(linear_sum_assignment(cost.numpy(), maximize=True)[1])
            changed |= not torch.equal(new, perms[g])
            perms[g] = new
        if not changed:
            break
    return perms


def apply_permutations(params: dict[str, torch.Tensor], perms: dict[str, torch.Tensor],
                       groups: dict[str, list[tuple[str, int]]]) -> dict[str, torch.Tensor]:
    out = dict(params)
    for g, members in groups.items():
        for p, ax in members:
            out[p] = _permute(out[p], ax, perms[g])
    return out


def stop_hint(family) -> str:
    """``: an nn.Sequential's units cannot be followed past '3' (Flatten) ...`` when that is why no
    permutation group was inferred, else ``""``."""
    stop = family.permutation_stop()
    return ("" if stop is None else f": its units cannot be followed past {stop} (only elementwise modules, per-unit "
            "norms and a Conv's pooling may sit between two layers); give the module a hidden_permutable() method "
            "(docs/extractors.md, 'family')")


def _aligned(models, reference: int, iterations: int, start: str = "invariant",
             params: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """``params`` (default: the models') permuted to match the reference model's units."""
    params = models.params if params is None else params
    groups = models.family.hidden_permutable()
    if not groups:
        raise UserError(f"architecture '{models.family.name}' declares no hidden-unit permutation symmetry to align"
                        + stop_hint(models.family))
    if not 0 <= reference < len(models.model_ids):
        raise UserError(f"reference must be a model index in [0, {len(models.model_ids)}), got {reference}")
    ref = {k: v[reference : reference + 1] for k, v in params.items()}
    perms = weight_match(params, ref, matching_groups(groups), iterations, start=start)  # a norm's statistics are no evidence
    return apply_permutations(params, perms, groups)  # ... but follow their units


@extractor("aligned-weights", kind="mechanistic", streaming=False, version="8", reads="weights",
           bounds={"reference": (0, None), "iterations": (0, None)})
def aligned_weights(models, reference: int = 0, iterations: int = 10, start: str = "invariant", balance: bool = True):
    """All weights after permutation alignment to a reference model (weight matching), flattened.

    ``start="invariant"`` (version 2) starts the matching from a solution that does not depend on
    the order of a model's stored units, so a model and any exact unit permutation of it get the
    same features; ``"identity"`` is version 1's start (docs/extractors.md, aligned-weights).
    ``iterations=0`` gives the start alone (version 1: no matching at all). ``balance`` (version 3):
    rescalable units are balanced before the matching (:func:`balance_units`), as in ``weight-stats``."""
    weights, meta = _weights(models, "aligned-weights")  # which entries are weights, and what was skipped
    params, balanced = _canonical(models, balance)  # every parameter balanced, once: the matching permutes them all
    aligned = _aligned(models, reference, iterations, start, params)
    return (torch.cat([aligned[k].reshape(len(aligned[k]), -1) for k in sorted(weights)], 1),
            {"reference": models.model_ids[reference], **meta, **balanced})


# -- loss landscape ----------------------------------------------------------------------------------
def _labelled(models, n: int):
    try:
        x, y = models.task.train_data()
    except UserError as e:
        raise UserError(f"lmc-barrier needs labelled training data: {e}") from None
    return x[:n], y[:n], models.task.loss


GOLDEN = (math.sqrt(5) - 1) / 2


def _max_on_path(barrier_at, alphas: torch.Tensor, pairs: int, refine: int) -> torch.Tensor:
    """The maximum ``[pairs]`` of ``barrier_at(alpha [pairs]) -> [pairs]`` over a path's interior.

    First the interior points of the grid ``alphas`` (shared by all pairs); then, with ``refine`` > 0,
    a golden-section search for each pair's maximum between the grid neighbours of its best grid
    point (``refine`` steps, ``refine + 1`` more evaluations); the result is the best point seen.
    """
    grid = torch.stack([barrier_at(a.expand(pairs)) for a in alphas[1:-1]], 1)  # [pairs, k]
    best, k = grid.max(1)
    if refine <= 0:
        return best
    lo, hi = alphas[k], alphas[k + 2]  # the grid neighbours of interior point k + 1
    c, d = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    fc, fd = barrier_at(c), barrier_at(d)
    best = torch.maximum(best, torch.maximum(fc, fd))
    for _ in range(refine - 1):
        left = fc > fd  # the maximum lies in [lo, d]: d becomes the new hi, c the new d
        lo, hi = torch.where(left, lo, c), torch.where(left, d, hi)
        new = torch.where(left, hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo))
        f_new = barrier_at(new)
        # left: the old c is the new d and the new point the new c; else the old d is the new c
        c, fc, d, fd = (torch.where(left, new, d), torch.where(left, f_new, fd),
                        torch.where(left, c, new), torch.where(left, fc, f_new))
        best = torch.maximum(best, f_new)
    return best


@extractor("lmc-barrier", kind="mechanistic", output="distances", streaming=False, version="8",
           bounds={"n_probes": (1, None), "n_points": (3, None), "refine": (0, None), "landmarks": (0, None),
                   "pair_chunk": (1, None)})
def lmc_barrier(models, n_probes: int = 256, n_points: int = 5, refine: int = 6, align: bool = False, landmarks: int = 0,
                seed: int = 0, pair_chunk: int = 2048, balance: bool = True):
    """Loss barrier on the linear path between two models: max over interior points of
    L((1-a) t_i + a t_j) - ((1-a) L(t_i) + a L(t_j)), on the task's training loss. The maximum is
    sought on ``n_points`` evenly spaced points, then refined by ``refine`` golden-section steps
    between the best point's neighbours (``refine=0``: the grid alone). ``align`` first permutes
    every model onto model 0 (weight matching from the order-free start; version 4); ``landmarks`` > 0 measures each model against that
    many landmark models instead of all pairs, giving [n, landmarks]. The paths run between the models with
    their free scales taken out (``balance``, version 5: :func:`_canonical`), so a model and its rescaled
    twin are one end point: a straight line between two points of one rescaling orbit crosses other
    functions."""
    x, y, loss = _labelled(models, n_probes)
    params, meta = _canonical(models, balance)
    params = _aligned(models, 0, 10, params=params) if align else params
    n = len(models.model_ids)
    if landmarks > 0:
        lm = np.sort(np.random.default_rng(seed).choice(n, size=min(landmarks, n), replace=False))
        ii, jj = np.meshgrid(np.arange(n), lm, indexing="ij")
        ii, jj = ii.reshape(-1), jj.reshape(-1)
    else:  # the path from j to i is the path from i to j reversed (symmetric alphas): each pair once
        lm = None
        ii, jj = np.triu_indices(n, 1)
    alphas = torch.linspace(0, 1, n_points)
    fam = models.family
    x = x.to(models.device)
    y = y.to(models.device)

    @torch.no_grad()
    def losses(theta: dict[str, torch.Tensor]) -> torch.Tensor:
        out = fam.outputs(theta, x)
        return loss(out, y.expand(out.shape[0], *y.shape))

    end = losses(params)  # [n]
    barrier = torch.empty(len(ii))
    for s in range(0, len(ii), pair_chunk):
        a_idx = torch.as_tensor(ii[s : s + pair_chunk])
        b_idx = torch.as_tensor(jj[s : s + pair_chunk])

        def barrier_at(alpha: torch.Tensor) -> torch.Tensor:  # alpha [pairs], one point on each pair's path
            def mix(v: torch.Tensor) -> torch.Tensor:
                a = alpha.to(v.device).reshape(-1, *([1] * (v.dim() - 1)))
                return (1 - a) * v[a_idx] + a * v[b_idx]
            a = alpha.to(end.device)
            return losses({k: mix(v) for k, v in params.items()}) - (end[a_idx] * (1 - a) + end[b_idx] * a)

        barrier[s : s + pair_chunk] = _max_on_path(barrier_at, alphas, len(a_idx), refine).clamp_min(0.0)
    if lm is None:
        out = torch.zeros(n, n)
        out[ii, jj] = barrier
        return out + out.T, meta
    return barrier.reshape(n, -1), {"landmarks": [models.model_ids[i] for i in lm], **meta}


@extractor("gradients", kind="mechanistic", reads="gradients", version="5", bounds={"n_probes": (1, None), "dim": (1, None)})
def gradients(models, probe_set: str = "in_dist", n_probes: int = 16, dim: int = 16, seed: int = 0, balance: bool = True):
    """Per-example gradients of a random output projection w.r.t. all parameters, on ``n_probes``
    probes, each randomly projected to ``dim`` dims (an empirical-NTK view): [n, n_probes * dim].
    Taken at the models with their free scales taken out (``balance``, version 2: :func:`_canonical`):
    a unit's rescaling divides its incoming weights' gradients by the scale it multiplies them by."""
    x = probes(models, probe_set, n_probes).to(models.device)
    g = generator(seed)
    r = torch.randn(models.task.n_out, generator=g).to(models.device)
    fam = models.family
    weights, meta = _weights(models, "gradients", balance)
    params = {k: v.detach() for k, v in weights.items()}
    canonical, _ = _canonical(models, balance)  # the buffers too: a normalized layer's running statistics follow it
    buffers = {k: v.detach() for k, v in canonical.items() if k not in weights}  # used, not differentiated

    def scalar(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        out = fam({**p, **buffers}, xi.unsqueeze(0))  # [n, 1, n_out]; models are independent, so one sum gives each its own grad
        return (out.reshape(out.shape[0], -1, out.shape[-1])[:, -1] * r).sum()

    grads = vmap(grad(scalar), in_dims=(None, 0))(params, x)  # {name: [P, n, ...]}
    n = len(models.model_ids)
    proj = torch.zeros(n, len(x), dim, device=models.device)
    for name in sorted(grads):
        gi = grads[name].movedim(0, 1).reshape(n, len(x), -1)
        R = torch.randn(gi.shape[-1], dim, generator=g).to(models.device) / math.sqrt(dim)
        proj += gi @ R
    return proj.flatten(1), meta
