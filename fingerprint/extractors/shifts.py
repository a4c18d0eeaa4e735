"""Shifts and scales the function cannot see, found by trying them: batched forward passes on the probes.

A family declares the shifts it knows (``output_shiftable``, a norm's ``"shift"``), and an
``nn.Sequential``'s are inferred from its children. Other architectures hide theirs in their forward:
a hand-written transformer whose read-out is ``self.unembed(...)[:, -1]``, or whose residual stream is
read only through layer norms (pre-norm blocks and a final norm), so that adding one number to every
feature of an embedding row, or of an attention or MLP output, changes nothing the model computes.
:func:`invisible_shifts` tries each: for every weight ``p`` and each axis ``a`` of it, it adds random
tensors constant along ``a`` (shifts of two sizes), the centring along ``a`` itself, and a random
tensor of the same size (any change), to a few models of the batch at once, and reads the outputs on
the probes (their log-softmax where the outputs are class logits, as the behavioural fingerprints
read them). ``(p, a)`` is a shift the function cannot see when every shift moves the reading by at
most :data:`INVISIBLE` of what any change moves it, on every tried model, and the centring moves no
model of the batch. A weight that no change moves on the probes (unused there) is left alone. The
weight fingerprints then centre each such entry along its axis (``mechanistic.centre_shifts``).
:func:`invisible_scales` does the same for a layer's weights scaled together (a layer a norm reads
inside a module's own forward), which the weight fingerprints then normalize like a declared one.
The unit trials (:mod:`fingerprint.extractors.unit_trials`; :class:`Found`'s ``norms``, ``rescalable``,
``sums`` and ``mixes``) scale single units: a layer's against an eval-mode batch norm's running
statistics of as many units, and a layer's (or a norm's affine units) against the next layer's columns,
which a positively homogeneous activation between (ReLU) leaves unseen; they move entries between two
weights read only through their sum, and mix an embedding's features with their one reader. The weight
fingerprints normalize, balance, fold and mix those like an ``nn.Sequential``'s inferred ones.

What this cannot tell: a shift that only inputs outside the probes would see (a probe set whose every
input sums to zero hides a common shift of a first layer's columns). The probes are the evidence here
as everywhere else in the toolkit.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch

from fingerprint.extractors.common import generator
from fingerprint.extractors.unit_trials import (
    SUM_ENTRIES,
    bias_of,
    embedding_candidates,
    embedding_mixed,
    fanout_candidates,
    fanout_scaled,
    firsts_and_matrices,
    folded,
    mean_shifted,
    mixing_matrix,
    norm_eps,
    norm_scaled,
    owner_of,
    row_scaled,
    sum_candidates,
    summed,
    unit_candidates,
    unit_factors,
)
from training.core.errors import UserError

INVISIBLE = 1e-3  # a shift moving the outputs by at most this fraction of what any change moves them is invisible
MOVED = 1e-5  # any change that moves the outputs by less than this (relative to their size) finds the weight unused
PROBES_PER_SET = 16  # inputs of each probe set the check reads
TRIED_MODELS = 4  # models the shifts are tried on, spread over the batch; the centring is then checked on all
SHIFT_SIZES = (0.5, 3.0)  # shift sizes tried, in units of the weight's root mean square
COPIES_PER_PASS = 64  # perturbed copies of a model per forward pass, at most
COPY_FLOATS = 1 << 24  # ... and at most this many floats of weights in them (64 MB)
TRIAL_FLOATS = 1 << 32  # weights x tried models x trials beyond which nothing is tried (2M parameters, 4 models, 500 trials)
# ... and forward-pass FLOPs x tried models x trials: an MLP's forward on the 32 probes is ~64 FLOPs a weight, so the
# same budget for MLPs, where a conv net's FLOPs far exceed its weights (an outside audit, 72: a 0.9M-weight BN CNN on
# 3x32x32 probes tried 1,164 changes, 55 s and 1.8 GB, for aligned-weights and weight-stats each)
TRIAL_FLOPS = 64 * TRIAL_FLOATS
SCALE_SIZES = (0.5, 2.0)  # factors a layer's weights are scaled by in the scale trials
UNIT_SPREADS = (0.5, 1.5)  # SDs of the random log scales of single units in the unit trials (e^1.5: 4.5x)


@dataclass(frozen=True)
class Found:
    """What trying found for one batch: ``shifts`` ``[(param, axis)]`` (centred) and ``scales``
    ``[(layer, (param, ...))]``: a layer whose weights (and bias) scaled together by any ``c > 0`` leave
    the outputs as they were (a layer a norm reads, inside a module's own forward), normalized;
    ``norms`` ``[(layer, (param, ...), running_mean, running_var, shift)]``: a layer an eval-mode batch
    norm reads, each unit's scale free when the norm's running statistics follow it (and, ``shift``, its
    bias's shift when the running mean does); ``rescalable`` ``[(layer, (param, ...), next_weight)]``: a
    layer (or a norm's affine units) whose units times ``c > 0`` with the next layer's columns over ``c``
    compute the same (a positively homogeneous activation between, such as ReLU); ``sums`` ``[(p, q,
    entries)]``: entries (``None``: all) of two weights the outputs read only through their sum, ``q``'s
    folded into ``p``'s; ``mixes`` ``[(embedding, reader)]``: an embedding whose features any invertible
    map mixes with the reader's columns taking its inverse transpose; ``rows`` ``[param]``: a weight
    each of whose rows any positive factor leaves unseen (``weight_norm``'s direction), each row
    normalized; ``fanouts`` ``[(layer, (param, ...), (reader, ...))]``: like ``rescalable`` for a layer or
    norm whose output several layers read, every reader's columns over ``c`` (:mod:`.unit_trials`)."""

    shifts: tuple[tuple[str, int], ...] = ()
    scales: tuple[tuple[str, tuple[str, ...]], ...] = ()
    norms: tuple[tuple[str, tuple[str, ...], str, str, bool], ...] = ()
    rescalable: tuple[tuple[str, tuple[str, ...], str], ...] = ()
    sums: tuple[tuple[str, str, tuple[int, ...] | None], ...] = ()
    mixes: tuple[tuple[str, str], ...] = ()
    rows: tuple[str, ...] = ()
    fanouts: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()


class _LastShifts:
    """The last batch's answer, reused while the parameters are the very same tensors, unedited (the
    weight fingerprints of one ``extract`` call each ask for it): keyed on each tensor's identity (a
    weak reference) and version, like ``mechanistic._LastBalanced``. An answer is never carried to
    other weights: whether a shift is invisible can depend on them (a layer norm at its initial gains
    makes more shifts invisible than a trained one; a review of the sixteenth session)."""

    def __init__(self) -> None:
        self.refs: dict[str, Any] = {}
        self.versions: dict[str, int] = {}
        self.found: Found | None = None

    def get(self, params: dict[str, torch.Tensor]) -> Found | None:
        same = (self.found is not None and self.refs.keys() == params.keys()
                and all(self.refs[k]() is v and self.versions[k] == v._version for k, v in params.items()))
        return self.found if same else None

    def put(self, params: dict[str, torch.Tensor], found: Found) -> None:
        self.refs = {k: weakref.ref(v) for k, v in params.items()}
        self.versions = {k: v._version for k, v in params.items()}
        self.found = found


_LAST = _LastShifts()
FIELDS = ("shifts", "scales", "norms", "rescalable", "sums", "mixes", "rows", "fanouts")


def invisible_shifts(models: Any) -> list[tuple[str, int]]:
    """``[(param, axis), ...]``: the weights of ``models`` (a ``ModelBatch``) and the axes along which a
    shift leaves every output on the probes as it was (module docstring). Tried on up to
    :data:`TRIED_MODELS` models spread over the batch: a random shift of each size in
    :data:`SHIFT_SIZES`, and the centring itself (each entry minus its mean along the axis: what the
    weight fingerprints do), must each move the reading by at most :data:`INVISIBLE` of what a random
    change of the weight moves it, on every tried model; then the centring of all the pairs found
    together is checked on every model of the batch, and a pair whose centring moves some model is
    dropped. Without probe sets, the labelled data's inputs (``--data``) are the probes. Empty without
    either, on probes the models cannot read (the fingerprints that read
    them say why), or for models whose trials would pass more than :data:`TRIAL_FLOATS` weights (a large
    imported model: the trials would cost more than the fingerprints)."""
    return list(found_by_trying(models).shifts)


def invisible_scales(models: Any) -> dict[str, list[str]]:
    """``{layer: [param, ...]}``: the layers (a submodule's own weights, bias included) that any common
    positive scale leaves as they were on the probes, e.g. a ``Linear`` a layer norm reads inside a
    module's own forward: scaled by each factor of :data:`SCALE_SIZES` and brought to root mean square 1
    (what the weight fingerprints do), each within :data:`INVISIBLE` of a random change, on the tried
    models; the normalization then checked on every model of the batch."""
    return {layer: list(ps) for layer, ps in found_by_trying(models).scales}


def _forward_flops(family: Any, base: dict[str, torch.Tensor], x: torch.Tensor) -> float:
    """FLOPs of one model's forward pass on the probes ``x`` (``torch.utils.flop_counter``: matrix
    products and convolutions), 0 where they cannot be counted (the weights' budget then decides)."""
    from torch.utils.flop_counter import FlopCounterMode  # deferred: start-up cost

    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            family.outputs({k: v[:1] for k, v in base.items()}, x)
    except Exception:  # noqa: BLE001 - a counter the forward cannot run under: no estimate, not a failure
        return 0.0
    return float(counter.get_total_flops())


def found_by_trying(models: Any) -> Found:
    """:func:`invisible_shifts` and :func:`invisible_scales` of one batch, tried once (:class:`_LastShifts`)."""
    found = _LAST.get(models.params)
    if found is None:
        found = _found(models)
        _LAST.put(models.params, found)
    return found


def centred_along(w: torch.Tensor, a: int) -> torch.Tensor:
    """``w [m, ...]`` minus its mean along per-model axis ``a``, in float64, cast back: the centring the
    weight fingerprints apply (``mechanistic.centre_shifts``) and the trials try."""
    return (w.double() - w.double().mean(1 + a, keepdim=True)).to(w.dtype)


def layer_normalized(ws: list[torch.Tensor]) -> list[torch.Tensor]:
    """Weights ``[m, ...]`` of one layer divided by their common root mean square per unit (the sum of
    squares over the first one's units), a layer of all zeros left as it is: the normalization the weight
    fingerprints apply to a layer a layer norm reads (``mechanistic.normalize_units``) and the trials try."""
    m, units = ws[0].shape[0], ws[0].shape[1]
    sq = sum(w.double().pow(2).reshape(m, -1).sum(1) for w in ws) / units
    c = sq.sqrt()
    c = torch.where(c > 0, c, torch.ones_like(c))
    return [(w.double() / c.reshape(m, *[1] * (w.dim() - 1))).to(w.dtype) for w in ws]


def _found(models: Any) -> Found:
    weights = models.weights()
    names = [k for k, v in sorted(weights.items()) if v.is_floating_point() and v.dim() >= 2]
    sets = models.task.probe_names()
    if not names or len(models) == 0:
        return Found()
    if sets:
        parts = [models.task.probes(s, record=False)[:PROBES_PER_SET] for s in sets]  # a trial's inputs, not the fingerprint's
        x = torch.cat([p for p in parts if p.shape[1:] == parts[0].shape[1:]])  # sets of another shape: the first's
    else:  # an import given --data and no probes: its labelled inputs (an outside audit: nothing was tried)
        try:
            x = models.task.train_data()[0][:2 * PROBES_PER_SET]
        except UserError:
            return Found()
    x = x.to(next(iter(models.params.values())).device)  # --device cuda: the probes where the weights are
    logits = models.task.n_out >= 2 and not models.task.regression()
    n = len(models)
    tried = sorted({round(i * (n - 1) / max(1, TRIED_MODELS - 1)) for i in range(min(n, TRIED_MODELS))})
    base = {k: v[tried] for k, v in models.params.items()}

    def read(params: dict[str, torch.Tensor]) -> torch.Tensor:  # [models, inputs, ...]
        out = models.family.outputs(params, x).double()
        return out.log_softmax(-1) if logits else out

    try:
        reference = read(base)
    except Exception:  # noqa: BLE001 - probes this family cannot read: nothing is tried, nothing assumed
        return Found()
    g = generator(0)
    layers: dict[str, list[str]] = {}
    for k in names:
        if weights[k].dim() >= 3:  # a layer: a submodule with a matrix (or kernel), and its own other weights
            layers.setdefault(owner_of(k), [])
    for k in names:
        if owner_of(k) in layers:
            layers[owner_of(k)].append(k)

    def random_change(w: torch.Tensor, axis: int | None, size: float) -> torch.Tensor:
        shape = list(w.shape)
        if axis is not None:
            shape[1 + axis] = 1  # one value along the axis: a shift
        scale = size * float(w.double().pow(2).mean().sqrt()) + 1e-3
        return torch.randn(shape, generator=g, dtype=torch.float64).mul(scale).to(w.device, w.dtype).expand(w.shape)

    trials: dict[tuple, Any] = {}  # label -> base -> {param: new value [m, ...]}
    for k in names:
        trials[("any", k)] = lambda b, k=k: {k: b[k] + random_change(b[k], None, 0.5)}
        for a in range(weights[k].dim() - 1):
            if weights[k].shape[1 + a] > 1:
                for size in SHIFT_SIZES:
                    trials[("shift", k, a, size)] = lambda b, k=k, a=a, size=size: {k: b[k] + random_change(b[k], a, size)}
                trials[("shift", k, a, None)] = lambda b, k=k, a=a: {k: centred_along(b[k], a)}
    for layer, ps in layers.items():
        for c in SCALE_SIZES:
            trials[("scale", layer, c)] = lambda b, ps=ps, c=c: {p: b[p] * c for p in ps}
        trials[("scale", layer, None)] = lambda b, ps=ps: dict(zip(ps, layer_normalized([b[p] for p in ps])))
    firsts, matrix = firsts_and_matrices(weights, layers)
    norms, pairs = unit_candidates(models.params, weights, firsts, matrix)
    for layer, ps, mean, var in norms:
        for spread in UNIT_SPREADS:
            trials[("norm", layer, mean, spread)] = lambda b, ps=ps, mean=mean, var=var, spread=spread: norm_scaled(
                b, ps, mean, var, unit_factors(b[ps[0]], spread, g, up=True), norm_eps(models.family, var))
        for bias in bias_of(ps, weights):
            for size in SHIFT_SIZES:
                trials[("norm-shift", layer, mean, size)] = lambda b, bias=bias, mean=mean, size=size: mean_shifted(
                    b, bias, mean, random_change(b[bias], None, size))
    for first, ps, second in pairs:
        for spread in UNIT_SPREADS:
            trials[("pair", first, second, spread)] = lambda b, ps=ps, second=second, spread=spread: fanout_scaled(
                b, ps, (second,), unit_factors(b[ps[0]], spread, g))
    fanouts = fanout_candidates(models.family, x, firsts, matrix, weights)
    for first, ps, readers in fanouts:
        for spread in UNIT_SPREADS:
            trials[("fan", first, spread)] = lambda b, ps=ps, readers=readers, spread=spread: fanout_scaled(
                b, ps, readers, unit_factors(b[ps[0]], spread, g))
    sums = sum_candidates(weights)
    for p, q in sums:
        for size in SHIFT_SIZES:
            trials[("sum", p, q, size)] = lambda b, p=p, q=q, size=size: summed(b, p, q, random_change(b[p], None, size))
    for k in names:
        if weights[k].dim() >= 3 and weights[k].shape[1] > 1:
            for spread in UNIT_SPREADS:
                trials[("rows", k, spread)] = lambda b, k=k, spread=spread: row_scaled(b, k, unit_factors(b[k], spread, g))
    mixes = embedding_candidates(models.family, weights)
    for e, w in mixes:
        for spread in UNIT_SPREADS:
            trials[("mix", e, w, spread)] = lambda b, e=e, w=w, spread=spread: embedding_mixed(
                b, e, w, mixing_matrix(b[e].shape[0], b[e].shape[2], spread, g))
    m = len(tried)
    numel = sum(v[0].numel() for v in base.values()) * m
    flops = _forward_flops(models.family, base, x) * m
    affordable = lambda k: numel * k <= TRIAL_FLOATS and flops * k <= TRIAL_FLOPS  # noqa: E731 - k trials' weights and FLOPs
    if not affordable(len(trials)):  # a large model: its forward passes would cost more than the fingerprints
        return Found()
    per_pass = max(1, min(COPIES_PER_PASS // m, COPY_FLOATS // max(1, numel)))

    def run(trials: dict[tuple, Any]) -> dict[tuple, torch.Tensor]:  # label -> [m] largest move of the reading
        labels, moved = list(trials), {}
        for start in range(0, len(labels), per_pass):
            batch = labels[start:start + per_pass]
            stacked = {k: v.repeat(len(batch), *[1] * (v.dim() - 1)) for k, v in base.items()}  # [copies * m, ...]
            for i, label in enumerate(batch):
                for k, v in trials[label](base).items():
                    stacked[k][i * m:(i + 1) * m] = v
            out = read(stacked).reshape(len(batch), m, *reference.shape[1:])
            for i, label in enumerate(batch):
                moved[label] = (out[i] - reference).abs().flatten(1).max(1).values  # [m]
        return moved

    labels = list(trials)
    moved = run(trials)
    size_of = reference.abs().flatten(1).max(1).values + 1.0  # [m]

    def moves(label: tuple) -> bool:  # the trial moves the outputs of every tried model
        return bool((moved[label] > MOVED * size_of).all())

    def reached(k: str) -> bool:  # a weight the probes reach in every tried model
        return moves(("any", k))

    def unseen_by(label: tuple, ks: list[str]) -> bool:  # within INVISIBLE of any change of the weights it moves
        return bool((moved[label] <= INVISIBLE * torch.stack([moved[("any", k)] for k in ks]).max(0).values).all())

    def unseen(label: tuple, k: str) -> bool:
        return unseen_by(label, [k])

    shifts = [(k, a) for (kind, k, *rest) in labels if kind == "shift" and rest[1] is None
              for a in [rest[0]] if reached(k) and all(unseen(("shift", k, a, s), k) for s in (*SHIFT_SIZES, None))]
    scales = [(layer, ps) for layer, ps in layers.items() if all(reached(p) for p in ps)
              and all(unseen(("scale", layer, c), ps[0]) for c in (*SCALE_SIZES, None))]

    found_norms = [(layer, ps, mean, var, bool(bias_of(ps, weights)) and all(
        unseen_by(("norm-shift", layer, mean, s), ps) for s in SHIFT_SIZES)) for layer, ps, mean, var in norms
        if all(reached(p) for p in ps) and all(unseen_by(("norm", layer, mean, s), ps) for s in UNIT_SPREADS)]
    found_pairs = [(first, ps, second) for first, ps, second in pairs if all(reached(p) for p in (*ps, second))
                   and all(unseen_by(("pair", first, second, s), [*ps, second]) for s in UNIT_SPREADS)]
    found_mixes = [(e, w) for e, w in mixes if reached(e) and reached(w)
                   and all(unseen_by(("mix", e, w, s), [e, w]) for s in UNIT_SPREADS)]
    found_fanouts = [(first, ps, readers) for first, ps, readers in fanouts if all(reached(p) for p in (*ps, *readers))
                     and all(unseen_by(("fan", first, s), [*ps, *readers]) for s in UNIT_SPREADS)]
    found_rows = [k for k in names if ("rows", k, UNIT_SPREADS[0]) in moved and reached(k)
                  and all(unseen(("rows", k, s), k) for s in UNIT_SPREADS)]
    found_sums: list[tuple[str, str, tuple[int, ...] | None]] = []
    per_entry: dict[tuple, Any] = {}
    for p, q in sums:
        if not (reached(p) and reached(q)):
            continue
        if all(unseen_by(("sum", p, q, s), [p, q]) for s in SHIFT_SIZES):
            found_sums.append((p, q, None))
        elif weights[p].shape[1] <= SUM_ENTRIES:  # some entries only (a GRU's reset and update gates, not its new gate)
            for i in range(weights[p].shape[1]):
                per_entry[("sum", p, q, i)] = lambda b, p=p, q=q, i=i: summed(b, p, q, _entry(b[p], i, g))
                per_entry[("entry", p, q, i)] = lambda b, p=p, i=i: {p: b[p] + _entry(b[p], i, g)}  # reached at all?
    if per_entry and affordable(len(per_entry)):
        moved |= run(per_entry)
        for p, q in sums:
            entries = tuple(i for (kind, p2, q2, i) in per_entry if kind == "sum" and (p2, q2) == (p, q)
                            and moves(("entry", p, q, i)) and unseen_by(("sum", p, q, i), [p, q]))
            if entries:
                found_sums.append((p, q, entries))
    bound = {k: INVISIBLE * float(moved[("any", k)].min()) for k in names if ("any", k) in moved}
    return _checked_on_all(models, read, Found(tuple(shifts), tuple((la, tuple(ps)) for la, ps in scales),
                                               tuple(found_norms), tuple(found_pairs), tuple(found_sums),
                                               tuple(found_mixes), tuple(found_rows), tuple(found_fanouts)), bound)


def _entry(w: torch.Tensor, i: int, g: torch.Generator) -> torch.Tensor:
    """A change of entry ``i`` of ``w [m, n]`` alone, by 3 times the weight's root mean square (and a random sign)."""
    d = torch.zeros(w.shape, dtype=torch.float64)
    d[:, i] = torch.randn(w.shape[0], generator=g, dtype=torch.float64) * (3 * float(w.double().pow(2).mean().sqrt()) + 1e-3)
    return d.to(w.device, w.dtype)


def _apply(params: dict[str, torch.Tensor], found: Found, g: torch.Generator, eps: Any) -> dict[str, torch.Tensor]:
    """``params`` with every shift centred and layer normalized as the weight fingerprints do, and every
    unit scale of ``found`` drawn at random (the fingerprints' own choice of it lies on the same orbit)."""
    out = dict(params)
    for k, a in found.shifts:
        out[k] = centred_along(out[k], a)
    for _, ps in found.scales:
        out.update(zip(ps, layer_normalized([out[p] for p in ps])))
    for _, ps, mean, var, shift in found.norms:
        out.update(norm_scaled(out, ps, mean, var, unit_factors(out[ps[0]], 1.0, g, up=True), eps(var)))
        for bias in bias_of(ps, out) if shift else []:
            out.update(mean_shifted(out, bias, mean, -out[mean]))
    for _, ps, second in found.rescalable:
        out.update(fanout_scaled(out, ps, (second,), unit_factors(out[ps[0]], 1.0, g)))
    for p, q, entries in found.sums:
        out.update(folded(out, p, q, entries))
    for e, w in found.mixes:
        out.update(embedding_mixed(out, e, w, mixing_matrix(out[e].shape[0], out[e].shape[2], 1.0, g)))
    for k in found.rows:
        out.update(row_scaled(out, k, unit_factors(out[k], 1.0, g)))
    for _, ps, readers in found.fanouts:
        out.update(fanout_scaled(out, ps, readers, unit_factors(out[ps[0]], 1.0, g)))
    return out


def _checked_on_all(models: Any, read: Any, found: Found, bound: dict[str, float]) -> Found:
    """``found`` less what moves some model of the batch by more than its weight's ``bound`` when taken
    out: all of it together in one pass when that holds, else each on its own."""
    parts = [("shifts", x, [x[0]]) for x in found.shifts] + [("scales", x, [x[1][0]]) for x in found.scales] + [
        ("norms", x, list(x[1])) for x in found.norms] + [("rescalable", x, [*x[1], x[2]]) for x in found.rescalable] + [
        ("sums", x, [x[0], x[1]]) for x in found.sums] + [("mixes", x, list(x)) for x in found.mixes] + [
        ("rows", x, [x]) for x in found.rows] + [("fanouts", x, [*x[1], *x[2]]) for x in found.fanouts]
    if not parts:
        return Found()
    reference = read(models.params)

    def moves(items: list[tuple[str, Any, list[str]]]) -> float:
        chosen = Found(**{f: tuple(x for kind, x, _ in items if kind == f) for f in FIELDS})
        return float((read(_apply(models.params, chosen, generator(1), lambda var: norm_eps(models.family, var))) - reference).abs().max())

    limit = min(max(bound[k] for k in ks) for _, _, ks in parts)
    if moves(parts) > limit:
        parts = [part for part in parts if moves([part]) <= max(bound[k] for k in part[2])]
    return Found(**{f: tuple(x for kind, x, _ in parts if kind == f) for f in FIELDS})


def forget_shifts() -> None:
    """Let go of the last batch's answer."""
    _LAST.__init__()
