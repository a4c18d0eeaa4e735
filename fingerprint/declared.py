"""Declared symmetries, tried on the probes at import: a group a module declares (``hidden_permutable()``,
``hidden_rescalable()``, ``hidden_mixable()``) must leave the model's outputs as they were when its members move
along the group's orbit. The weight fingerprints take each declared group out, so a declaration that is not the
model's symmetry (a member left out, such as a projection's bias that moves with its weight's rows, or a member on
the wrong axis) makes function-identical models read apart. Outside audit 112: with the docs' attention example,
which left out the q/k/v biases, a null whose families held head-mixed twins read `crosses lineage` on
`weight-stats`; a key's axis 1 for -1 was accepted as well."""

from __future__ import annotations

import copy

import torch
from torch import nn

from fingerprint.extractors.mixing import check_member, mix_spec, moved_group
from training.core.errors import UserError
from training.families.module import call_with, declared_pairs

MOVED_TOL = 1e-6  # the largest change of an output (float64), relative to the largest output, that a declared group may make
METHODS = ("hidden_permutable", "hidden_rescalable", "hidden_mixable")


def _element(kind: str, h: int, dh: int, gen: torch.Generator) -> torch.Tensor:
    """A random element ``[h, dh, dh]`` of a group's orbit: a permutation, positive scales, or an invertible mixing
    (an orthogonal map times scales in [e^-0.5, e^0.5]: well conditioned, and not its own inverse transpose)."""
    scales = torch.exp(torch.rand(h, dh, generator=gen, dtype=torch.float64) - 0.5)
    if kind == "hidden_permutable":
        return torch.stack([torch.eye(dh, dtype=torch.float64)[torch.randperm(dh, generator=gen)] for _ in range(h)])
    if kind == "hidden_rescalable":
        return torch.diag_embed(scales)
    q, _ = torch.linalg.qr(torch.randn(h, dh, dh, generator=gen, dtype=torch.float64))
    return q * scales[:, None, :]


def _hint(params: dict[str, torch.Tensor], spec: list | dict) -> str:
    """A member the group probably left out: a listed ``X.weight``'s ``X.bias`` (it moves with the weight's rows)."""
    members, _ = mix_spec(spec)
    listed = {m.param for m in members}
    biases = [(m.param.removesuffix("weight") + "bias", -1 if m.side == "out" else 0)
              for m in members if m.axis == 0 and m.param.endswith(".weight")]
    missing = [(p, a) for p, a in biases if p in params and p not in listed]
    axes = "each member's axis (0: incoming rows, 1: outgoing columns, -1: outgoing rows, as a key's of a query's group)"
    if missing:
        return f"; a bias moves with its weight's rows: list {', '.join(f'({p!r}, {a})' for p, a in missing)} too, and check {axes}"
    return f"; check {axes}"


def check_declared(template: nn.Module, state: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor], label: str) -> None:
    """Refuse (one line) a group that ``template``'s class declares which moves the outputs on the first inputs of
    ``inputs`` (its probe sets) by more than :data:`MOVED_TOL` of their scale. Tried in float64 on the model ``state``
    with every parameter (not the buffers) moved by a little noise: a symmetry holds at every point, and a group that
    leaves out a bias which is zero in the checkpoint (a step-0 file) would pass at that point only (review 112)."""
    declared = {m: getattr(template, m)() for m in METHODS if callable(getattr(template, m, None))}
    for method in ("hidden_permutable", "hidden_rescalable"):  # (param, axis) pairs only: said at import, not later
        if method in declared:
            try:
                declared_pairs(method, declared[method])
            except UserError as e:
                raise UserError(f"{label}: {e}") from None
    if not declared or not inputs:
        return
    gen = torch.Generator().manual_seed(0)
    model = copy.deepcopy(template).double().eval()
    names = {k for k, _ in model.named_parameters(remove_duplicate=False)}
    base = {k: v.detach().double() if v.is_floating_point() else v for k, v in state.items()}
    for k in names & set(base):
        v = base[k]
        base[k] = v + 0.1 * (float(v.std()) if v.numel() > 1 and float(v.std()) > 0 else 0.1) * torch.randn(
            v.shape, generator=gen, dtype=torch.float64)
    x = next(iter(inputs.values()))[:32]
    x = x.double() if x.is_floating_point() else x
    params = {k: v[None] for k, v in base.items() if v.is_floating_point()}

    def run(p: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return call_with(model, {**base, **{k: v[0] for k, v in p.items()}}, (x,)).double()

    ref = run(params)
    scale = float(ref.abs().max()) or 1.0
    for method, groups in declared.items():
        for g, spec in dict(groups).items():
            for m in mix_spec(spec)[0]:  # a tuple member's axis named as its method reads it
                if m.given is not None:
                    check_member(params, method, str(g), m.param, m.given)
            moved = moved_group(params, str(g), spec, lambda h, dh, method=method: _element(method, h, dh, gen))
            change = float((run(moved) - ref).abs().max()) / scale
            if not change <= MOVED_TOL:
                kind = {"hidden_permutable": "permutation", "hidden_rescalable": "rescaling"}.get(method, "mixing")
                raise UserError(f"{label}: {method}() group '{g}' is not a symmetry of the model: moving its members "
                                f"along it (a random {kind}) changed the outputs on the probes by {change:.2g} of their "
                                f"scale{_hint(params, spec)}")
