"""Shifts the function cannot see, found by trying them: a forward pass per candidate on the probes.

A family declares the shifts it knows (``output_shiftable``, a norm's ``"shift"``), and an
``nn.Sequential``'s are inferred from its children. Other architectures hide theirs in their forward:
a hand-written transformer whose read-out is ``self.unembed(...)[:, -1]``, or whose residual stream is
read only through layer norms (pre-norm blocks and a final norm), so that adding one number to every
feature of an embedding row, or of an attention or MLP output, changes nothing the model computes.
:func:`invisible_shifts` tries each: for every weight ``p`` and each axis ``a`` of it, it adds a random
tensor that is constant along ``a`` (the shift) and a random tensor of the same size (any change), to
two models at once, and reads the outputs on the probes (their log-softmax where the outputs are class
logits, as the behavioural fingerprints read them). ``(p, a)`` is a shift the function cannot see
when the shift moves the reading by at most :data:`INVISIBLE` of what any change moves it, on both
models. A weight that no change moves on the probes (unused there) is left alone. The weight
fingerprints then centre each such entry along its axis (``mechanistic.centre_shifts``).

What this cannot tell: a shift that only inputs outside the probes would see (a probe set whose every
input sums to zero hides a common shift of a first layer's columns). The probes are the evidence here
as everywhere else in the toolkit.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from fingerprint.extractors.common import generator

INVISIBLE = 1e-3  # a shift moving the outputs by at most this fraction of what any change moves them is invisible
MOVED = 1e-5  # any change that moves the outputs by less than this (relative to their size) finds the weight unused
PROBES_PER_SET = 16  # inputs of each probe set the check reads
COPIES_PER_PASS = 64  # perturbed copies of a model per forward pass, at most
COPY_FLOATS = 1 << 24  # ... and at most this many floats of weights in them (64 MB)
_FOUND: dict[tuple, list[tuple[str, int]]] = {}  # per architecture and weight shapes: one answer for all of a population's batches


def invisible_shifts(models: Any) -> list[tuple[str, int]]:
    """``[(param, axis), ...]``: the weights of ``models`` (a ``ModelBatch``) and the axes along which a
    shift leaves every output on the probes as it was, tried on its first two models (module docstring).
    Empty without probe sets, or probes the models cannot read (the fingerprints that read them say
    why). Computed once per architecture (its hyper-parameters and weight shapes)
    and reused for the other batches of a population."""
    weights = models.weights()
    names = [k for k, v in sorted(weights.items()) if v.is_floating_point() and v.dim() >= 2]
    sets = models.task.probe_names()
    if not sets or not names:
        return []
    parts = [models.task.probes(s)[:PROBES_PER_SET] for s in sets]
    x = torch.cat([p for p in parts if p.shape[1:] == parts[0].shape[1:]])  # sets of another shape: the first's
    logits = models.task.n_out >= 2 and not models.task.regression()
    key = (repr(models.family.hparams()), tuple((k, tuple(weights[k].shape[1:])) for k in names), logits,
           hashlib.sha256(x.cpu().contiguous().numpy().tobytes()).hexdigest())
    if key in _FOUND:
        return list(_FOUND[key])
    base_ids = list(range(min(2, len(models))))
    base = {k: v[base_ids] for k, v in models.params.items()}
    x = x.to(next(iter(base.values())).device)  # --device cuda: the probes where the weights are

    def read(params: dict[str, torch.Tensor]) -> torch.Tensor:  # [copies, inputs, ...]
        out = models.family.outputs(params, x).double()
        return out.log_softmax(-1) if logits else out

    try:
        reference = read(base)  # [m, inputs, ...]
    except Exception:  # noqa: BLE001 - probes this family cannot read: nothing is tried, nothing assumed
        return []
    g = generator(0)
    trials: list[tuple[str, int | None]] = [(k, None) for k in names] + [
        (k, a) for k in names for a in range(weights[k].dim() - 1) if weights[k].shape[1 + a] > 1]
    moved: dict[tuple[str, int | None], torch.Tensor] = {}
    numel = sum(v[0].numel() for v in base.values()) * len(base_ids)
    per_pass = max(1, min(COPIES_PER_PASS // len(base_ids), COPY_FLOATS // max(1, numel)))
    for start in range(0, len(trials), per_pass):
        batch = trials[start:start + per_pass]
        stacked = {k: v.repeat(len(batch), *[1] * (v.dim() - 1)) for k, v in base.items()}  # [copies * m, ...]
        for i, (k, a) in enumerate(batch):
            w = base[k]
            shape = list(w.shape)
            if a is not None:
                shape[1 + a] = 1  # one value along the axis: a shift
            scale = 0.5 * float(w.double().pow(2).mean().sqrt()) + 1e-3
            delta = torch.randn(shape, generator=g, dtype=torch.float64).mul(scale).to(w.device, w.dtype).expand(w.shape)
            stacked[k][i * len(base_ids):(i + 1) * len(base_ids)] += delta
        out = read(stacked).reshape(len(batch), len(base_ids), *reference.shape[1:])
        for i, t in enumerate(batch):
            moved[t] = (out[i] - reference).abs().flatten(1).max(1).values  # [m]
    size = reference.abs().flatten(1).max(1).values + 1.0  # [m]
    found = []
    for k, a in trials:
        if a is None:
            continue
        anything = moved[(k, None)]
        if bool((anything > MOVED * size).all()) and bool((moved[(k, a)] <= INVISIBLE * anything).all()):
            found.append((k, a))
    _FOUND[key] = found
    return list(found)


def forget_shifts() -> None:
    """Let go of the remembered answers (tests that rebuild an architecture under one name)."""
    _FOUND.clear()


