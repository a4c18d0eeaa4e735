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
The unit trials (:class:`Found`'s ``norms`` and ``rescalable``) scale single units: a layer's against an
eval-mode batch norm's running statistics of as many units, and a layer's (or a norm's affine units)
against the next layer's columns, which a positively homogeneous activation between (ReLU) leaves
unseen; the weight fingerprints normalize and balance those like an ``nn.Sequential``'s inferred ones.

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
from training.core.errors import UserError

INVISIBLE = 1e-3  # a shift moving the outputs by at most this fraction of what any change moves them is invisible
MOVED = 1e-5  # any change that moves the outputs by less than this (relative to their size) finds the weight unused
PROBES_PER_SET = 16  # inputs of each probe set the check reads
TRIED_MODELS = 4  # models the shifts are tried on, spread over the batch; the centring is then checked on all
SHIFT_SIZES = (0.5, 3.0)  # shift sizes tried, in units of the weight's root mean square
COPIES_PER_PASS = 64  # perturbed copies of a model per forward pass, at most
COPY_FLOATS = 1 << 24  # ... and at most this many floats of weights in them (64 MB)
TRIAL_FLOATS = 1 << 32  # weights x tried models x trials beyond which nothing is tried (2M parameters, 4 models, 500 trials)
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
    compute the same (a positively homogeneous activation between, such as ReLU)."""

    shifts: tuple[tuple[str, int], ...] = ()
    scales: tuple[tuple[str, tuple[str, ...]], ...] = ()
    norms: tuple[tuple[str, tuple[str, ...], str, str, bool], ...] = ()
    rescalable: tuple[tuple[str, tuple[str, ...], str], ...] = ()


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
        parts = [models.task.probes(s)[:PROBES_PER_SET] for s in sets]
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
            layers.setdefault(k.rsplit(".", 1)[0] if "." in k else "", [])
    for k in names:
        owner = k.rsplit(".", 1)[0] if "." in k else ""
        if owner in layers:
            layers[owner].append(k)

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
    norms, pairs = _unit_candidates(models.params, weights, layers)
    for layer, ps, mean, var in norms:
        for spread in UNIT_SPREADS:
            trials[("norm", layer, mean, spread)] = lambda b, ps=ps, mean=mean, var=var, spread=spread: _norm_scaled(
                b, ps, mean, var, _unit_factors(b[ps[0]], spread, g, up=True), norm_eps(models.family, var))
        for bias in _bias(ps, weights):
            for size in SHIFT_SIZES:
                trials[("norm-shift", layer, mean, size)] = lambda b, bias=bias, mean=mean, size=size: _mean_shifted(
                    b, bias, mean, random_change(b[bias], None, size))
    for first, ps, second in pairs:
        for spread in UNIT_SPREADS:
            trials[("pair", first, second, spread)] = lambda b, ps=ps, second=second, spread=spread: _pair_scaled(
                b, ps, second, _unit_factors(b[ps[0]], spread, g))
    labels = list(trials)
    m = len(tried)
    moved: dict[tuple, torch.Tensor] = {}
    numel = sum(v[0].numel() for v in base.values()) * m
    if numel * len(labels) > TRIAL_FLOATS:  # a large model: its forward passes would cost more than the fingerprints
        return Found()
    per_pass = max(1, min(COPIES_PER_PASS // m, COPY_FLOATS // max(1, numel)))
    for start in range(0, len(labels), per_pass):
        batch = labels[start:start + per_pass]
        stacked = {k: v.repeat(len(batch), *[1] * (v.dim() - 1)) for k, v in base.items()}  # [copies * m, ...]
        for i, label in enumerate(batch):
            for k, v in trials[label](base).items():
                stacked[k][i * m:(i + 1) * m] = v
        out = read(stacked).reshape(len(batch), m, *reference.shape[1:])
        for i, label in enumerate(batch):
            moved[label] = (out[i] - reference).abs().flatten(1).max(1).values  # [m]
    size_of = reference.abs().flatten(1).max(1).values + 1.0  # [m]

    def reached(k: str) -> bool:  # a weight the probes reach in every tried model
        return bool((moved[("any", k)] > MOVED * size_of).all())

    def unseen(label: tuple, k: str) -> bool:
        return bool((moved[label] <= INVISIBLE * moved[("any", k)]).all())

    shifts = [(k, a) for (kind, k, *rest) in labels if kind == "shift" and rest[1] is None
              for a in [rest[0]] if reached(k) and all(unseen(("shift", k, a, s), k) for s in (*SHIFT_SIZES, None))]
    scales = [(layer, ps) for layer, ps in layers.items() if all(reached(p) for p in ps)
              and all(unseen(("scale", layer, c), ps[0]) for c in (*SCALE_SIZES, None))]
    def unseen_by(label: tuple, ks: list[str]) -> bool:  # within INVISIBLE of any change of the weights it moves
        return bool((moved[label] <= INVISIBLE * torch.stack([moved[("any", k)] for k in ks]).max(0).values).all())

    found_norms = [(layer, ps, mean, var, bool(_bias(ps, weights)) and all(
        unseen_by(("norm-shift", layer, mean, s), ps) for s in SHIFT_SIZES)) for layer, ps, mean, var in norms
        if all(reached(p) for p in ps) and all(unseen_by(("norm", layer, mean, s), ps) for s in UNIT_SPREADS)]
    found_pairs = [(first, ps, second) for first, ps, second in pairs if all(reached(p) for p in (*ps, second))
                   and all(unseen_by(("pair", first, second, s), [*ps, second]) for s in UNIT_SPREADS)]
    bound = {k: INVISIBLE * float(moved[("any", k)].min()) for k in names if ("any", k) in moved}
    return _checked_on_all(models, read, Found(tuple(shifts), tuple((la, tuple(ps)) for la, ps in scales),
                                               tuple(found_norms), tuple(found_pairs)), bound)


def _unit_candidates(params: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], layers: dict[str, list[str]]
                     ) -> tuple[list[tuple[str, tuple[str, ...], str, str]], list[tuple[str, tuple[str, ...], str]]]:
    """What the unit trials try: each layer (a matrix or kernel, ``layers``) against each batch norm's
    running statistics of as many units (``(layer, params, running_mean, running_var)``), and each layer
    or norm (a submodule whose weights are all one value per unit: its affine units) against each layer
    reading as many inputs (``(first, params, next_weight)``; a Conv's channels against a Linear's columns
    in blocks, as a flatten lays them out)."""
    def owner(k: str) -> str:
        return k.rsplit(".", 1)[0] if "." in k else ""

    def units(ps: list[str]) -> int:
        return int(weights[ps[0]].shape[1])

    matrix = {layer: next(p for p in ps if weights[p].dim() >= 3) for layer, ps in layers.items()}
    layers = {layer: sorted(ps, key=lambda p: -weights[p].dim()) for layer, ps in layers.items()}  # the matrix first
    firsts = {layer: ps for layer, ps in layers.items() if all(weights[p].shape[1] == units(ps) for p in ps)}  # rows: units
    stats = []
    for k, v in sorted(params.items()):
        var = k[: -len("running_mean")] + "running_var"
        if k.endswith("running_mean") and var in params and v.is_floating_point() and v.dim() == 2 == params[var].dim():
            stats.append((k, var, int(v.shape[1])))
    norms = [(layer, tuple(ps), mean, var) for layer, ps in firsts.items() for mean, var, n in stats if units(ps) == n]
    affine: dict[str, list[str]] = {}
    for k, v in sorted(weights.items()):
        if owner(k) not in layers and v.is_floating_point():
            affine.setdefault(owner(k), []).append(k)
    affine = {o: sorted(ps, key=lambda p: not p.endswith("weight")) for o, ps in affine.items()
              if all(weights[p].dim() == 2 and weights[p].shape[1] == weights[ps[0]].shape[1] for p in ps)}
    pairs = []
    for first, ps in [*firsts.items(), *affine.items()]:
        for second in layers:
            n, cols, w = units(ps), int(weights[matrix[second]].shape[2]), weights[ps[0]]
            if second != first and (cols == n or (w.dim() >= 4 and weights[matrix[second]].dim() == 3 and cols % n == 0)):
                pairs.append((first, tuple(ps), matrix[second]))
    return norms, pairs


def _bias(ps: tuple[str, ...], weights: dict[str, torch.Tensor]) -> list[str]:
    """A layer's bias among its weights ``ps`` (one value per unit, named ``bias``), as a list of at most one."""
    return [p for p in ps if p.endswith("bias") and weights[p].dim() == 2][:1]


def _unit_factors(w: torch.Tensor, spread: float, g: torch.Generator, up: bool = False) -> torch.Tensor:
    """``[m, units]`` random positive factors, one per unit of ``w [m, units, ...]``: ``exp(spread * N(0, 1))``;
    ``up``: ``exp(spread * |N(0, 1)|)``, at least 1 (a running variance scaled down would meet the norm's ``eps``)."""
    z = torch.randn(w.shape[0], w.shape[1], generator=g, dtype=torch.float64)
    return (z.abs() if up else z).mul(spread).exp().to(w.device)


def unit_scaled(w: torch.Tensor, c: torch.Tensor, axis: int, power: int = 1) -> torch.Tensor:
    """``w [m, ...]`` with its entries along per-model ``axis`` times ``c [m, units] ** power`` (a Linear's
    columns after a flattened Conv: whole blocks per unit, channel-major), in float64, cast back."""
    size = w.shape[1 + axis]
    c = c.pow(power).repeat_interleave(size // c.shape[1], dim=1)
    shape = [w.shape[0]] + [1] * (w.dim() - 1)
    shape[1 + axis] = size
    return (w.double() * c.reshape(shape)).to(w.dtype)


def norm_eps(family: Any, var: str) -> float:
    """The ``eps`` of the norm that owns running variance ``var``, read from the family's module when it
    has one (an imported module's ``template()``), else torch's default ``1e-5``."""
    try:
        return float(family.template().get_submodule(var.rsplit(".", 1)[0] if "." in var else "").eps)
    except Exception:  # noqa: BLE001 - no module, or no eps on it: torch's default
        return 1e-5


def _norm_scaled(b: dict[str, torch.Tensor], ps: tuple[str, ...], mean: str, var: str, c: torch.Tensor, eps: float) -> dict:
    """A layer's units times ``c`` with its norm's running mean times ``c`` and ``var + eps`` times ``c**2``."""
    return {p: unit_scaled(b[p], c, 0) for p in ps} | {mean: unit_scaled(b[mean], c, 0),
                                                       var: (unit_scaled(b[var].double() + eps, c, 0, 2) - eps).to(b[var].dtype)}


def _mean_shifted(b: dict[str, torch.Tensor], bias: str, mean: str, d: torch.Tensor) -> dict:
    return {bias: b[bias] + d, mean: b[mean] + d}


def _pair_scaled(b: dict[str, torch.Tensor], ps: tuple[str, ...], second: str, c: torch.Tensor) -> dict:
    return {p: unit_scaled(b[p], c, 0) for p in ps} | {second: unit_scaled(b[second], 1 / c, 1)}


def _apply(params: dict[str, torch.Tensor], found: Found, g: torch.Generator, eps: Any) -> dict[str, torch.Tensor]:
    """``params`` with every shift centred and layer normalized as the weight fingerprints do, and every
    unit scale of ``found`` drawn at random (the fingerprints' own choice of it lies on the same orbit)."""
    out = dict(params)
    for k, a in found.shifts:
        out[k] = centred_along(out[k], a)
    for _, ps in found.scales:
        out.update(zip(ps, layer_normalized([out[p] for p in ps])))
    for _, ps, mean, var, shift in found.norms:
        out.update(_norm_scaled(out, ps, mean, var, _unit_factors(out[ps[0]], 1.0, g, up=True), eps(var)))
        for bias in _bias(ps, out) if shift else []:
            out.update(_mean_shifted(out, bias, mean, -out[mean]))
    for _, ps, second in found.rescalable:
        out.update(_pair_scaled(out, ps, second, _unit_factors(out[ps[0]], 1.0, g)))
    return out


def _checked_on_all(models: Any, read: Any, found: Found, bound: dict[str, float]) -> Found:
    """``found`` less what moves some model of the batch by more than its weight's ``bound`` when taken
    out: all of it together in one pass when that holds, else each on its own."""
    parts = [("shifts", x, [x[0]]) for x in found.shifts] + [("scales", x, [x[1][0]]) for x in found.scales] + [
        ("norms", x, list(x[1])) for x in found.norms] + [("rescalable", x, [*x[1], x[2]]) for x in found.rescalable]
    if not parts:
        return Found()
    reference = read(models.params)

    def moves(items: list[tuple[str, Any, list[str]]]) -> float:
        chosen = Found(**{f: tuple(x for kind, x, _ in items if kind == f) for f in ("shifts", "scales", "norms", "rescalable")})
        return float((read(_apply(models.params, chosen, generator(1), lambda var: norm_eps(models.family, var))) - reference).abs().max())

    limit = min(max(bound[k] for k in ks) for _, _, ks in parts)
    if moves(parts) > limit:
        parts = [part for part in parts if moves([part]) <= max(bound[k] for k in part[2])]
    return Found(**{f: tuple(x for kind, x, _ in parts if kind == f) for f in ("shifts", "scales", "norms", "rescalable")})


def forget_shifts() -> None:
    """Let go of the last batch's answer."""
    _LAST.__init__()
