"""Shifts the function cannot see, found by trying them: a forward pass per candidate on the probes.

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

What this cannot tell: a shift that only inputs outside the probes would see (a probe set whose every
input sums to zero hides a common shift of a first layer's columns). The probes are the evidence here
as everywhere else in the toolkit.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from fingerprint.extractors.common import generator

INVISIBLE = 1e-3  # a shift moving the outputs by at most this fraction of what any change moves them is invisible
MOVED = 1e-5  # any change that moves the outputs by less than this (relative to their size) finds the weight unused
PROBES_PER_SET = 16  # inputs of each probe set the check reads
TRIED_MODELS = 4  # models the shifts are tried on, spread over the batch; the centring is then checked on all
SHIFT_SIZES = (0.5, 3.0)  # shift sizes tried, in units of the weight's root mean square
COPIES_PER_PASS = 64  # perturbed copies of a model per forward pass, at most
COPY_FLOATS = 1 << 24  # ... and at most this many floats of weights in them (64 MB)


class _LastShifts:
    """The last batch's answer, reused while the parameters are the very same tensors, unedited (the
    weight fingerprints of one ``extract`` call each ask for it): keyed on each tensor's identity (a
    weak reference) and version, like ``mechanistic._LastBalanced``. An answer is never carried to
    other weights: whether a shift is invisible can depend on them (a layer norm at its initial gains
    makes more shifts invisible than a trained one; a review of the sixteenth session)."""

    def __init__(self) -> None:
        self.refs: dict[str, Any] = {}
        self.versions: dict[str, int] = {}
        self.found: list[tuple[str, int]] | None = None

    def get(self, params: dict[str, torch.Tensor]) -> list[tuple[str, int]] | None:
        same = (self.found is not None and self.refs.keys() == params.keys()
                and all(self.refs[k]() is v and self.versions[k] == v._version for k, v in params.items()))
        return list(self.found) if same and self.found is not None else None

    def put(self, params: dict[str, torch.Tensor], found: list[tuple[str, int]]) -> None:
        self.refs = {k: weakref.ref(v) for k, v in params.items()}
        self.versions = {k: v._version for k, v in params.items()}
        self.found = list(found)


_LAST = _LastShifts()


def invisible_shifts(models: Any) -> list[tuple[str, int]]:
    """``[(param, axis), ...]``: the weights of ``models`` (a ``ModelBatch``) and the axes along which a
    shift leaves every output on the probes as it was (module docstring). Tried on up to
    :data:`TRIED_MODELS` models spread over the batch: a random shift of each size in
    :data:`SHIFT_SIZES`, and the centring itself (each entry minus its mean along the axis: what the
    weight fingerprints do), must each move the reading by at most :data:`INVISIBLE` of what a random
    change of the weight moves it, on every tried model; then the centring of all the pairs found
    together is checked on every model of the batch, and a pair whose centring moves some model is
    dropped. Empty without probe sets, or on probes the models cannot read (the fingerprints that read
    them say why)."""
    found = _LAST.get(models.params)
    if found is not None:
        return found
    found = _found(models)
    _LAST.put(models.params, found)
    return list(found)


def _found(models: Any) -> list[tuple[str, int]]:
    weights = models.weights()
    names = [k for k, v in sorted(weights.items()) if v.is_floating_point() and v.dim() >= 2]
    sets = models.task.probe_names()
    if not sets or not names or len(models) == 0:
        return []
    parts = [models.task.probes(s)[:PROBES_PER_SET] for s in sets]
    x = torch.cat([p for p in parts if p.shape[1:] == parts[0].shape[1:]])  # sets of another shape: the first's
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
        return []
    g = generator(0)
    trials: list[tuple[str, int | None, float | None]] = [(k, None, 0.5) for k in names] + [
        (k, a, size) for k in names for a in range(weights[k].dim() - 1) if weights[k].shape[1 + a] > 1
        for size in (*SHIFT_SIZES, None)]  # size None: the centring
    m = len(tried)
    moved: dict[tuple[str, int | None, float | None], torch.Tensor] = {}
    numel = sum(v[0].numel() for v in base.values()) * m
    per_pass = max(1, min(COPIES_PER_PASS // m, COPY_FLOATS // max(1, numel)))
    for start in range(0, len(trials), per_pass):
        batch = trials[start:start + per_pass]
        stacked = {k: v.repeat(len(batch), *[1] * (v.dim() - 1)) for k, v in base.items()}  # [copies * m, ...]
        for i, (k, a, size) in enumerate(batch):
            w = base[k]
            if size is None:
                change = -w.double().mean(1 + a, keepdim=True).expand(w.shape).to(w.dtype)
            else:
                shape = list(w.shape)
                if a is not None:
                    shape[1 + a] = 1  # one value along the axis: a shift
                scale = size * float(w.double().pow(2).mean().sqrt()) + 1e-3
                change = torch.randn(shape, generator=g, dtype=torch.float64).mul(scale).to(w.device, w.dtype).expand(w.shape)
            stacked[k][i * m:(i + 1) * m] += change
        out = read(stacked).reshape(len(batch), m, *reference.shape[1:])
        for i, t in enumerate(batch):
            moved[t] = (out[i] - reference).abs().flatten(1).max(1).values  # [m]
    size_of = reference.abs().flatten(1).max(1).values + 1.0  # [m]
    found = []
    for k, a, size in trials:
        if a is None or size is not None:
            continue
        anything = moved[(k, None, 0.5)]
        if bool((anything <= MOVED * size_of).any()):
            continue  # a weight the probes do not reach (in some model): left alone
        if all(bool((moved[(k, a, s)] <= INVISIBLE * anything).all()) for s in (*SHIFT_SIZES, None)):
            found.append((k, a))
    if not found:
        return []
    bound = {k: INVISIBLE * float(moved[(k, None, 0.5)].min()) for k, _ in found}
    return _checked_on_all(models, read, found, bound)


def _checked_on_all(models: Any, read: Any, found: list[tuple[str, int]], bound: dict[str, float]
                    ) -> list[tuple[str, int]]:
    """``found`` less the pairs whose centring moves some model of the batch by more than its weight's
    ``bound``: all together in one pass when that holds, else each pair on its own."""
    reference = read(models.params)

    def moves(pairs: list[tuple[str, int]]) -> float:
        params = dict(models.params)
        for k, a in pairs:
            w = params[k]
            params[k] = (w.double() - w.double().mean(1 + a, keepdim=True)).to(w.dtype)
        return float((read(params) - reference).abs().max())

    if moves(found) <= min(bound[k] for k, _ in found):
        return found
    return [(k, a) for k, a in found if moves([(k, a)]) <= bound[k]]


def forget_shifts() -> None:
    """Let go of the last batch's answer."""
    _LAST.__init__()
