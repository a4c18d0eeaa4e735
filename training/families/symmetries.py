"""What an imported module's weights can change without changing its function, read from its structure.

For an ``nn.Sequential`` of ``Linear`` / ``Conv`` layers the children in order are the forward, so
the symmetries between two layers follow from what lies between them: hidden-unit permutations
(``sequential_groups``), positive rescalings (``sequential_rescalable``), scales and shifts a norm
removes (``sequential_normalized``), the read-out's class-axis shift (``sequential_output``), and
invertible mixings of a linear bottleneck (``sequential_mixable``). An ``nn.MultiheadAttention``'s
forward is its own wherever it sits, so its heads' mixings are read from any module
(``attention_mixable``); so is a stock ``nn.TransformerEncoderLayer``'s or ``TransformerDecoderLayer``'s,
whose feed-forward units permute (``feedforward_groups``). ``ModuleFamily`` asks these; weight-space fingerprints use the answers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.Sigmoid, nn.LeakyReLU, nn.SiLU, nn.ELU, nn.Softplus, nn.Identity, nn.Dropout)
LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# after a Conv: act on each channel alone, so the channels permute through them
CHANNELWISE = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
               nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
               nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
# positively homogeneous (f(c x) = c f(x), c > 0): a unit's scale passes through them (hidden_rescalable)
HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Dropout, *CHANNELWISE)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)
NORM_TENSORS = ("weight", "bias", "running_mean", "running_var")  # per unit: permuted with it (not num_batches_tracked)
NORM_STATISTICS = ("running_mean", "running_var")  # permuted with their unit, but no evidence of which unit it is


def matching_groups(groups: dict[str, list[tuple[str, int]]]) -> dict[str, list[tuple[str, int]]]:
    """``groups`` without a norm's running statistics: what weight matching compares. The statistics
    follow their unit when a permutation is applied, but they are activation scales (1-50 before a
    norm), not learned weights: in the cost they outweigh the weights and mis-match units (the
    session's review: 6 of 16 units of an exactly permuted model matched with them, 16 of 16 without)."""
    return {g: [(p, a) for p, a in members if p.rsplit(".", 1)[-1] not in NORM_STATISTICS] for g, members in groups.items()}


def _units(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _per_unit(child: nn.Module, layer: nn.Module) -> bool:
    """``child`` after ``layer`` treats ``layer``'s output units alike and one by one (so permuting the
    units permutes ``child``'s per-unit tensors): a batch norm over its channels, a layer norm over a
    Linear's features, pooling or channel dropout after a Conv."""
    if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        return child.num_features == _units(layer)
    if isinstance(child, nn.LayerNorm):
        return isinstance(layer, nn.Linear) and tuple(child.normalized_shape) == (layer.out_features,)
    return isinstance(child, CHANNELWISE) and not isinstance(layer, nn.Linear)


def sequential_rescalable(module: nn.Module) -> dict[str, list[tuple[str, int]]]:
    """The groups of :func:`sequential_groups` with only positively homogeneous modules between the two
    layers (:data:`HOMOGENEOUS`: ReLU, leaky ReLU, pooling, dropout; no norm, no tanh or GELU): their
    units' scale moves freely between incoming and outgoing weights (``Family.hidden_rescalable``)."""
    if not isinstance(module, nn.Sequential):
        return {}
    groups, _, homogeneous, _, affine = _walk(module)
    return {g: v for g, v in groups.items() if g in homogeneous} | _flattened(module) | affine


SHIFT_FREE = (nn.Identity, nn.Dropout)  # between a layer and its norm: the norm still removes the layer's shift
AFTER_LOGITS = (nn.Identity, nn.Dropout, nn.Softmax, nn.LogSoftmax)


def sequential_output(module: nn.Module) -> list[tuple[str, int]]:
    """The last ``Linear`` of an ``nn.Sequential`` when only identity, dropout or a (log-)softmax over the
    classes follow it: ``[(name.weight, 0), (name.bias, 0)]``, its class axis (``Family.output_shiftable``);
    else ``[]``. Only a softmax over the last axis (``dim=-1``) is known to be over the classes: over
    another (a review: ``Softmax(dim=0)``, over the batch; ``dim=1`` of ``[B, T, C]`` outputs, over the
    positions) it sees a shift of the logits."""
    if not isinstance(module, nn.Sequential):
        return []
    for name, child in reversed(list(module.named_children())):
        if isinstance(child, nn.Linear):
            return _incoming(name, child)
        if isinstance(child, (nn.Softmax, nn.LogSoftmax)) and child.dim != -1:
            return []
        if not isinstance(child, AFTER_LOGITS):
            return []
    return []


def sequential_mixable(module: nn.Module) -> dict[str, list[tuple[str, int]]]:
    """The ``Linear -> Linear`` bottlenecks of an ``nn.Sequential``, with only identity or dropout
    between the two layers: ``{first: [(first.weight, 0), (first.bias, 0), (second.weight, 1)]}``
    (``Family.hidden_mixable``; a chain of three linear layers gives two groups)."""
    if not isinstance(module, nn.Sequential):
        return {}
    out: dict[str, list[tuple[str, int]]] = {}
    prev: tuple[str, nn.Module] | None = None
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            if prev is not None:
                out[prev[0]] = _incoming(*prev) + [(f"{name}.weight", 1)]
            prev = (name, child)
        elif not isinstance(child, SHIFT_FREE):
            prev = None
    return out


def attention_mixable(module: nn.Module) -> dict[str, dict]:
    """Each ``nn.MultiheadAttention`` of ``module`` (and any depth inside it, e.g. a
    ``TransformerEncoderLayer``'s ``self_attn``), within each head: its query rows against its key rows
    (``{name}.qk``) and its value rows into the output projection's columns (``{name}.vo``), biases
    included, in ``Family.hidden_mixable``'s dict form (slices of the fused ``in_proj_weight``, or the
    separate ``q/k/v_proj_weight``). One with ``add_bias_kv`` (learned key and value rows outside the
    projections) is left out."""
    out: dict[str, dict] = {}
    for name, m in module.named_modules():
        if not isinstance(m, nn.MultiheadAttention) or m.bias_k is not None:
            continue
        e, pre = m.embed_dim, f"{name}." if name else ""

        def part(i: int, side: str) -> list[dict]:
            rows = [i * e, (i + 1) * e]
            if m._qkv_same_embed_dim:
                weight = {"param": f"{pre}in_proj_weight", "axis": 0, "side": side, "rows": rows}
            else:
                weight = {"param": f"{pre}{'qkv'[i]}_proj_weight", "axis": 0, "side": side}
            bias = [{"param": f"{pre}in_proj_bias", "axis": 0, "side": side, "rows": rows}] if m.in_proj_bias is not None else []
            return [weight, *bias]

        out[f"{pre}qk"] = {"members": part(0, "in") + part(1, "out"), "blocks": m.num_heads}
        out[f"{pre}vo"] = {"members": part(2, "in") + [{"param": f"{pre}out_proj.weight", "axis": 1, "side": "out"}],
                           "blocks": m.num_heads}
    return out


# a stock encoder / decoder layer's activation, by what it is: elementwise ones let its feed-forward units permute
ELEMENTWISE_FUNCTIONS = (F.relu, F.gelu, F.silu, F.tanh, F.sigmoid, F.elu, F.leaky_relu, torch.relu, torch.tanh,
                         torch.sigmoid)
TRANSFORMER_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def _elementwise(act: object) -> bool:
    """A stock transformer layer's ``activation`` acts on each unit alone: a function torch names
    (``"relu"`` and ``"gelu"`` are ``F.relu`` / ``F.gelu``) or an elementwise module; a callable of the
    user's own is not assumed to (what it does to a unit is unknown)."""
    if isinstance(act, nn.Module):
        return isinstance(act, ELEMENTWISE)
    return any(act is f for f in ELEMENTWISE_FUNCTIONS)


def feedforward_groups(module: nn.Module) -> dict[str, list[tuple[str, int]]]:
    """The feed-forward units of each stock ``nn.TransformerEncoderLayer`` / ``TransformerDecoderLayer`` in
    ``module``, at any depth: torch's forward (not the user's) runs ``linear2(dropout(activation(linear1(x))))``,
    so with an elementwise activation the units permute freely: ``{name.linear1: [(name.linear1.weight,
    0), (name.linear1.bias, 0), (name.linear2.weight, 1)]}``. Only the classes themselves: a subclass may
    have a forward of its own (a gated feed-forward whose ``linear1`` has twice the units; a review)."""
    out: dict[str, list[tuple[str, int]]] = {}
    for name, m in module.named_modules():
        if type(m) in TRANSFORMER_LAYERS and _elementwise(getattr(m, "activation", None)):
            pre = f"{name}." if name else ""
            out[f"{pre}linear1"] = _incoming(f"{pre}linear1", m.linear1) + [(f"{pre}linear2.weight", 1)]
    return out


def sequential_normalized(module: nn.Module) -> dict[str, dict]:
    """The ``Linear`` / ``Conv`` layers of an ``nn.Sequential`` followed by a norm over their units with
    only positively homogeneous modules (ReLU, pooling, dropout) between: a batch norm over the layer's
    channels (in eval mode each unit's scale cancels: its running mean and variance carry it) or a layer
    norm over a Linear's features (one scale for the layer). ``{layer: {"incoming": [(layer.weight, 0),
    (layer.bias, 0)], "stats": [(norm.running_mean, 1), (norm.running_var, 2)], "per_unit": bool}}``
    (``Family.hidden_normalized``; found by :func:`_walk`)."""
    return _walk(module)[3] if isinstance(module, nn.Sequential) else {}


def _incoming(name: str, layer: nn.Module) -> list[tuple[str, int]]:
    """A layer's units' incoming entries: ``[(name.weight, 0), (name.bias, 0)]`` (no bias: the weight alone)."""
    return [(f"{name}.weight", 0)] + ([(f"{name}.bias", 0)] if layer.bias is not None else [])


def _flattened(module: nn.Sequential) -> dict[str, list[tuple[str, int]]]:
    """Conv channels read by a Linear after a ``Flatten`` (only positively homogeneous modules around it):
    ``{conv: [(conv.weight, 0), (conv.bias, 0), (linear.weight, 1)]}``, the Linear's columns in blocks of
    ``in_features / channels`` per channel (channel-major, as ``Flatten`` lays them out)."""
    out: dict[str, list[tuple[str, int]]] = {}
    conv: tuple[str, nn.Module] | None = None
    flat = False
    for name, child in module.named_children():
        if isinstance(child, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and getattr(child, "groups", 1) == 1:
            conv, flat = (name, child), False
        elif isinstance(child, nn.Linear) and conv is not None and flat:
            cname, layer = conv
            if child.in_features % layer.out_channels == 0:
                out[cname] = _incoming(cname, layer) + [(f"{name}.weight", 1)]
            conv = None
        elif isinstance(child, nn.Flatten) and conv is not None and not flat:
            flat = True
        elif not isinstance(child, HOMOGENEOUS):
            conv = None
    return out


def _walk(module: nn.Module) -> tuple[dict[str, list[tuple[str, int]]], str | None, set[str], dict[str, dict],
                                      dict[str, list[tuple[str, int]]]]:
    """:func:`sequential_groups`, the first child that ended an inference (``"'3' (Flatten)"``), the
    groups with only positively homogeneous modules between their layers (:func:`sequential_rescalable`),
    the layers a norm over their units follows with only such modules between (:func:`sequential_normalized`),
    and the norms whose affine output (weight and bias) reaches the next layer through such modules only:
    ``{norm: [(norm.weight, 0), (norm.bias, 0), (next.weight, 1)]}``, a scale of each unit there passing to
    the next layer's column (rescalable too; an outside audit of the sixteenth session: ``Linear ->
    BatchNorm -> ReLU -> Linear`` with the norm's weight and bias times ``c`` and the next column over ``c``
    read as a candidate)."""
    groups: dict[str, list[tuple[str, int]]] = {}
    homogeneous: set[str] = set()
    normalized: dict[str, dict] = {}
    prev: tuple[str, nn.Module] | None = None
    between: list[tuple[str, int]] = []  # per-unit tensors of the norms since ``prev``
    scaled = True  # only positively homogeneous modules since ``prev``
    direct = True  # only identity or dropout since ``prev``: its shift reaches the next norm
    stop = None
    affine: dict[str, list[tuple[str, int]]] = {}
    last_norm: tuple[str, list[tuple[str, int]]] | None = None  # the last norm's affine tensors, if only homogeneous since
    for name, child in module.named_children():
        if isinstance(child, LAYERS) and getattr(child, "groups", 1) == 1 and prev is not None and last_norm is not None \
                and isinstance(child, nn.Linear) == isinstance(prev[1], nn.Linear):
            affine[last_norm[0]] = last_norm[1] + [(f"{name}.weight", 1)]
        if not (prev is not None and _per_unit(child, prev[1])) and not isinstance(child, HOMOGENEOUS):
            last_norm = None
        if isinstance(child, LAYERS) and getattr(child, "groups", 1) != 1:  # grouped / depthwise: units tied to a group
            if stop is None:
                stop = f"'{name}' ({type(child).__name__}, groups={child.groups})"
            prev, between = None, []
        elif isinstance(child, LAYERS):
            if prev is not None and (isinstance(child, nn.Linear) == isinstance(prev[1], nn.Linear)):
                pname, player = prev
                groups[pname] = _incoming(pname, player) + between + [(f"{name}.weight", 1)]
                if scaled and not between:
                    homogeneous.add(pname)
            prev, between, scaled, direct = (name, child), [], True, True
        elif prev is not None and _per_unit(child, prev[1]):
            if isinstance(child, NORMS) and scaled:  # the first norm, only homogeneous modules before it: a free scale
                batch = not isinstance(child, nn.LayerNorm)
                stats = [(f"{name}.{t}", k) for t, k in (("running_mean", 1), ("running_var", 2))
                         if batch and isinstance(getattr(child, t, None), torch.Tensor)]
                shift = None
                if direct and not batch:
                    shift = {"kind": "layer"}
                elif direct and stats and stats[0][0].endswith(".running_mean"):  # eval mode: the running mean absorbs a bias shift
                    shift = {"kind": "batch", "mean": stats[0][0]}
                normalized[prev[0]] = {"incoming": _incoming(*prev), "stats": stats, "per_unit": batch, "shift": shift,
                                       "eps": float(getattr(child, "eps", 0.0))}
            direct = False
            if isinstance(child, NORMS):
                tensors = [(f"{name}.{t}", 0) for t in ("weight", "bias") if isinstance(getattr(child, t, None), torch.Tensor)]
                last_norm = (name, tensors) if tensors and tensors[0][0].endswith(".weight") else None
            between += [(f"{name}.{t}", 0) for t in NORM_TENSORS if isinstance(getattr(child, t, None), torch.Tensor)]
            scaled = scaled and isinstance(child, HOMOGENEOUS)  # pooling after a Conv keeps the scale; a norm does not
        elif not isinstance(child, ELEMENTWISE):
            if prev is not None and stop is None:
                stop = f"'{name}' ({type(child).__name__})"
            prev, between = None, []
        else:
            scaled = scaled and isinstance(child, HOMOGENEOUS)
            direct = direct and isinstance(child, SHIFT_FREE)
    return groups, stop, homogeneous, normalized, affine


def sequential_groups(module: nn.Module) -> dict[str, list[tuple[str, int]]]:
    """Permutation groups of an ``nn.Sequential``: the output units (channels) of each ``Linear`` /
    ``Conv`` layer whose next weighted child is another such layer with only elementwise modules,
    per-unit norms (a batch norm over the channels, a layer norm over a Linear's features) and, after
    a Conv, pooling between them: ``[(name.weight, 0), (name.bias, 0), (norm.weight, 0), ...,
    (next.weight, 1)]``. Anything else between two layers (a reshape, a custom module) ends the
    inference there (:func:`sequential_stop` names it)."""
    if not isinstance(module, nn.Sequential):
        return {}
    return _walk(module)[0]


def sequential_stop(module: nn.Module) -> str | None:
    """The first child of an ``nn.Sequential`` that ended a permutation-group inference after a layer
    (``"'3' (Flatten)"``), for the message when no group was found; ``None`` otherwise."""
    return _walk(module)[1] if isinstance(module, nn.Sequential) else None
