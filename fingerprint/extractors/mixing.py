"""Units that mix freely: where only linear maps lie between two layers, any invertible ``G`` between them
leaves the function as it was (a ``Linear -> Linear`` bottleneck, a head's queries against its keys
and its values into the output projection). ``canonical_mixing`` puts each group a family names
(``Family.hidden_mixable``) at the least-norm point of its orbit; ``mechanistic.canonical_scales``
alternates it with the positive rescalings and the norms' scales. The declarations' two forms (tuple
members as ``hidden_rescalable``'s, dict members for other layouts) are read and checked here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from training.core.errors import UserError


def check_member(params: dict[str, torch.Tensor], method: str, group: str, p: str, a: int) -> str:
    """Check one member ``(p, a)`` of a ``method()`` group: axis 0, 1 or -1 of a parameter that has it;
    returns the message prefix that names it."""
    where = f"{method}() group '{group}' lists ('{p}', {a})"
    if a not in (0, 1, -1):
        raise UserError(f"{where}: a unit's incoming weights are axis 0 of their tensor, its outgoing weights "
                        "axis 1, or axis -1 for outgoing rows (valid axes: 0, 1, -1)")
    if p not in params or params[p].dim() < 2 + max(a, 0):
        raise UserError(f"{where}, which is not a parameter with that axis (parameters: "
                        f"{', '.join(sorted(params)[:12])}{', ...' if len(params) > 12 else ''})")
    return where


MIX_RANK = 1e-6  # a group whose incoming or outgoing side has a singular value below this fraction of its largest keeps its weights
MIX_TOL = 1e-7  # the largest relative change of a mixed weight at which alternating with the scales stops
MIX_ROUNDS = 300  # alternations of mixing and the scales (each a block coordinate step towards the least norm)


@dataclass(frozen=True)
class _Member:
    """One member of a ``hidden_mixable`` group, read from either form: ``param``'s ``axis`` (of the
    per-model tensor) holds the units, on the incoming side (``side == "in"``: mixed by ``G``) or the
    outgoing one (``"out"``: by ``G^-T``, as outgoing columns or a bilinear form's other rows); ``heads``,
    when set, an axis holding the heads (``[h, d, dh]`` weights, TransformerLens' layout); ``rows``, when
    set, the ``(start, stop)`` range of ``axis`` that is the group's (a fused projection's slice)."""

    param: str
    axis: int
    side: str
    heads: int | None = None
    rows: tuple[int, int] | None = None
    given: int | None = None  # the axis of a ``(param, axis)`` member, for its messages


def mix_spec(spec: list | dict) -> tuple[list[_Member], int | None]:
    """A ``hidden_mixable`` group's ``(members, blocks)``. A group is a list of members or ``{"members":
    [...], "blocks": h}``; a member is ``(param, axis)`` as in ``hidden_rescalable`` (axis 0 incoming rows,
    1 outgoing columns, -1 outgoing rows) or ``{"param": p, "axis": a, "side": "in" | "out", "heads": axis,
    "rows": [start, stop]}`` (the last two optional)."""
    members, blocks = (spec["members"], spec.get("blocks")) if isinstance(spec, dict) else (spec, None)
    out = []
    for m in members:
        if isinstance(m, dict):
            rows = m.get("rows")
            out.append(_Member(str(m.get("param")), int(m.get("axis", 0)), str(m.get("side", "in")),
                               None if m.get("heads") is None else int(m["heads"]),
                               None if rows is None else (int(rows[0]), int(rows[1]))))
        else:
            p, a = str(m[0]), int(m[1])
            out.append(_Member(p, 1 if a == 1 else 0, "in" if a == 0 else "out", given=a))
    return out, None if blocks is None else int(blocks)


def _check_mixable(params: dict[str, torch.Tensor], mixable: dict[str, list | dict]) -> dict[str, tuple[int, int]]:
    """``{group: (blocks, units per block)}`` of ``mixable`` (``Family.hidden_mixable``) after checking each
    group: every member a parameter with its axes (a tuple member's axis 0, 1 or -1, as
    ``hidden_rescalable``'s), a side ``"in"`` or ``"out"``, a range inside its axis; both sides present;
    every member's units (per head) of the group's size. One-line errors name the culprit."""
    shapes = {}
    for g, spec in mixable.items():
        members, blocks = mix_spec(spec)
        for m in members:
            where = f"hidden_mixable() group '{g}' lists '{m.param}'"
            if m.given is not None:
                check_member(params, "hidden_mixable", g, m.param, m.given)
            if m.side not in ("in", "out"):
                raise UserError(f"{where} with side '{m.side}' (valid: in, out)")
            dims = params[m.param].dim() - 1 if m.param in params else -1
            if not 0 <= m.axis < dims or (m.heads is not None and (not 0 <= m.heads < dims or m.heads == m.axis)):
                raise UserError(f"{where}, which is not a parameter with axis {m.axis}" + (
                    f" and heads axis {m.heads}" if m.heads is not None else "") + " (parameters: "
                    f"{', '.join(sorted(params)[:12])}{', ...' if len(params) > 12 else ''})")
            size = params[m.param].shape[1 + m.axis]
            if m.rows is not None and not 0 <= m.rows[0] < m.rows[1] <= size:
                raise UserError(f"{where} with rows {list(m.rows)}, outside its axis {m.axis} of {size}")
        if {m.side for m in members} != {"in", "out"}:
            raise UserError(f"hidden_mixable() group '{g}' needs an incoming member (axis 0) and an outgoing one "
                            f"(axis 1 or -1): a mixing must act on one side and be undone on the other (members: "
                            f"{[(m.param, m.axis) for m in members]})")
        headed = [m for m in members if m.heads is not None]
        h = blocks if blocks is not None else (params[headed[0].param].shape[1 + headed[0].heads] if headed else 1)
        total = []
        for m in members:
            units = (m.rows[1] - m.rows[0]) if m.rows else params[m.param].shape[1 + m.axis]
            total.append(units * (params[m.param].shape[1 + m.heads] if m.heads is not None else 1))
        first = next(m for m in members if m.side == "in")
        k = total[members.index(first)]
        for m, t in zip(members, total):
            if t != k:
                raise UserError(f"hidden_mixable() group '{g}': '{m.param}' axis {m.axis} has {t} entries, the group's "
                                f"other members {k} units")
            if m.heads is not None and params[m.param].shape[1 + m.heads] != h:
                raise UserError(f"hidden_mixable() group '{g}': '{m.param}' has {params[m.param].shape[1 + m.heads]} "
                                f"heads on axis {m.heads}, the group {h}")
        if h < 1 or k % h:
            raise UserError(f"hidden_mixable() group '{g}': {h} blocks do not divide its {k} units")
        shapes[g] = (h, k // h)
    return shapes


def _member_rows(w: torch.Tensor, m: _Member, h: int, dh: int) -> torch.Tensor:
    """``[n, h, dh, rest]``: each unit's entries of ``w [n, ...]`` for member ``m``, in float64."""
    w = w.double()
    if m.rows is not None:
        w = w.narrow(1 + m.axis, m.rows[0], m.rows[1] - m.rows[0])
    if m.heads is not None:
        return w.movedim((1 + m.heads, 1 + m.axis), (1, 2)).reshape(w.shape[0], h, dh, -1)
    return w.movedim(1 + m.axis, 1).reshape(w.shape[0], h, dh, -1)


def _put_rows(w: torch.Tensor, m: _Member, piece: torch.Tensor) -> torch.Tensor:
    """``w`` with member ``m``'s entries replaced by ``piece [n, h, dh, rest]`` (:func:`_member_rows`'s inverse)."""
    view = w.narrow(1 + m.axis, m.rows[0], m.rows[1] - m.rows[0]) if m.rows is not None else w
    if m.heads is not None:
        moved = view.movedim((1 + m.heads, 1 + m.axis), (1, 2))
        back = piece.reshape(moved.shape).movedim((1, 2), (1 + m.heads, 1 + m.axis))
    else:
        moved = view.movedim(1 + m.axis, 1)
        back = piece.reshape(moved.shape).movedim(1, 1 + m.axis)
    if m.rows is None:
        return back.to(w.dtype)
    w = w.clone()
    w.narrow(1 + m.axis, m.rows[0], m.rows[1] - m.rows[0]).copy_(back)
    return w


def canonical_mixing(params: dict[str, torch.Tensor], mixable: dict[str, list | dict]) -> dict[str, torch.Tensor]:
    """``params`` with each group of ``mixable`` (``Family.hidden_mixable``) at one point of its orbit: a
    group's incoming side ``A [k, a]`` (its members of side ``"in"``, each unit's entries) and outgoing side
    ``B [k, b]`` (side ``"out"``: outgoing columns, or a bilinear form's other rows) compute through ``B^T A``
    only, the same for ``(G A, G^-T B)`` with any invertible ``G``. The point is the one of least
    ``|A|^2 + |B|^2``, where ``A A^T = B B^T`` is diagonal: ``A = S^1/2 V^T`` and ``B = S^1/2 U^T`` for
    ``B^T A = U S V^T``, the units in descending order of ``S``, each unit's sign set so that its largest
    incoming entry is positive. Found from the two ``k x k`` Gram matrices (``A A^T = E D E^T``, then
    ``D^1/2 E^T B B^T E D^1/2 = W S^2 W^T``; ``G = S^1/2 W^T D^-1/2 E^T``), within each block (head), all
    models at once, float64, cast back. The function is unchanged and a model and any mixing of it give
    the same tensors (up to units of tied ``S``). A model whose side has a singular value below
    :data:`MIX_RANK` of its largest (a dead unit, or more units than the product's rank) keeps that
    group's weights. Other entries are returned unchanged."""
    shapes = _check_mixable(params, mixable)
    out = dict(params)
    for g, spec in mixable.items():
        members, _ = mix_spec(spec)
        h, dh = shapes[g]
        inc = [m for m in members if m.side == "in"]
        outg = [m for m in members if m.side == "out"]
        side_a = torch.cat([_member_rows(out[m.param], m, h, dh) for m in inc], -1)  # [n, h, dh, ca]
        side_b = torch.cat([_member_rows(out[m.param], m, h, dh) for m in outg], -1)  # [n, h, dh, cb]
        if dh > min(side_a.shape[-1], side_b.shape[-1]):
            new_a, new_b = _beyond_rank(side_a, side_b)
        else:
            new_a, new_b = _least_norm(side_a, side_b)
        top = new_a.abs().argmax(-1, keepdim=True)
        moved = (new_a != side_a).any(-1, keepdim=True) | (new_b != side_b).any(-1, keepdim=True)  # kept models' units keep their signs
        sign = torch.where((new_a.gather(-1, top) < 0) & moved, -1.0, 1.0).to(new_a.dtype)  # [n, h, dh, 1]
        new_a, new_b = new_a * sign, new_b * sign
        for side, group in ((new_a, inc), (new_b, outg)):
            at = 0
            for m in group:
                width = _member_rows(out[m.param][:1], m, h, dh).shape[-1]
                out[m.param] = _put_rows(out[m.param], m, side[..., at:at + width])
                at += width
    return out


def _beyond_rank(side_a: torch.Tensor, side_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`canonical_mixing` for a group of more units than its product can have rank (``k > min(a,
    b)``, say ``Linear(d, 8) -> Linear(8, 3)``): no invertible ``G`` reaches the least norm, but the
    orbit's edge does, with the same product (the same function): ``A = S^1/2 V^T`` and ``B = S^1/2 U^T``
    from the product's SVD on the first ``min(a, b)`` units, the others all zero."""
    u, sv, vh = torch.linalg.svd(side_b.mT @ side_a, full_matrices=False)  # [n, h, cb, r], [n, h, r], [n, h, r, ca]
    r, root = sv.shape[-1], sv.clamp_min(0).sqrt()
    new_a, new_b = torch.zeros_like(side_a), torch.zeros_like(side_b)
    new_a[..., :r, :] = root[..., None] * vh
    new_b[..., :r, :] = root[..., None] * u.mT
    return new_a, new_b


def _least_norm(side_a: torch.Tensor, side_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`canonical_mixing`'s point of one group, ``(G A, G^-T B)`` (before the signs), from the two
    Gram matrices; a model whose side has a singular value below :data:`MIX_RANK` of its largest keeps
    ``(A, B)``."""
    dh = side_a.shape[-2]
    d, e = torch.linalg.eigh(side_a @ side_a.mT)  # ascending
    root = d.clamp_min(0).sqrt()
    ga_half = e * root[..., None, :]  # L with L L^T = A A^T
    lam, w = torch.linalg.eigh(ga_half.mT @ (side_b @ side_b.mT) @ ga_half)
    full = (d[..., 0] > MIX_RANK ** 2 * d[..., -1]) & (lam[..., 0] > MIX_RANK ** 2 * lam[..., -1])  # [n, h]
    lam, w = lam.flip(-1).clamp_min(0), w.flip(-1)
    quarter = lam.pow(0.25)
    safe = torch.where(root > 0, root, torch.ones_like(root))
    mix = (quarter[..., :, None] * w.mT) @ (e / safe[..., None, :]).mT  # G = S^1/2 W^T D^-1/2 E^T
    unmix = (w.mT / torch.where(quarter > 0, quarter, torch.ones_like(quarter))[..., :, None]) @ (e * root[..., None, :]).mT
    eye = torch.eye(dh, dtype=torch.float64, device=side_a.device).expand_as(mix)
    keep = ~full[..., None, None]
    mix, unmix = torch.where(keep, eye, mix), torch.where(keep, eye, unmix)  # unmix = G^-T
    return mix @ side_a, unmix @ side_b


def moved_group(params: dict[str, torch.Tensor], group: str, spec: list | dict,
                element: Callable[[int, int], torch.Tensor]) -> dict[str, torch.Tensor]:
    """``params`` (``[n, ...]`` each) with one group (``group``, ``spec``: a ``hidden_mixable`` group, or a ``hidden_permutable``
    / ``hidden_rescalable`` one, whose tuple members are read the same way) moved along its orbit: each block's
    incoming side by ``g = element(h, dh)`` (``[h, dh, dh]``: a permutation, positive scales or any invertible
    mixing) and its outgoing side by ``g^-T``. A declaration that is the model's symmetry leaves its outputs
    unchanged (:func:`fingerprint.declared.check_declared` tries one)."""
    members, _ = mix_spec(spec)
    h, dh = _check_mixable(params, {group: spec})[group]
    g = element(h, dh).double()
    inv_t = torch.linalg.inv(g).mT
    out = dict(params)
    for m in members:
        rows = _member_rows(out[m.param], m, h, dh)  # [n, h, dh, rest]
        out[m.param] = _put_rows(out[m.param], m, (g if m.side == "in" else inv_t) @ rows)
    return out
