"""Any ``nn.Module`` as a batched family, via ``torch.func.functional_call`` + ``vmap``.

This is the generic path for user models (``fingerprint import``) and for architectures that are
not hand-vectorised. Named activations come from forward hooks on named submodules (like hook
points in interpretability libraries): ``capture=["encoder.0"]`` records that submodule's output.
If a module cannot be vmapped, the family falls back to a per-model loop and says so once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from training.core.errors import UserError
from training.families.base import Family


def describe(value: Any, limit: int = 4) -> str:
    """What a forward pass returned, in a few words, when it is not one tensor: ``a tuple (tensor
    [2, 10, 32], tensor [1, 2, 32])``, ``a dict (logits: tensor [2, 3], loss: NoneType)``, ``a
    CausalLMOutput (logits: tensor [2, 5, 50], ...)`` (an HF ``ModelOutput`` is a mapping)."""
    shown = lambda v: f"tensor {list(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__  # noqa: E731
    kind = type(value).__name__
    a = "an" if kind[:1].lower() in "aeiou" else "a"
    if isinstance(value, Mapping):
        items = list(value.items())
        parts = ", ".join(f"{k}: {shown(v)}" for k, v in items[:limit])
    elif isinstance(value, (tuple, list)):
        items = list(value)
        parts = ", ".join(shown(v) for v in items[:limit])
    else:
        return f"{a} {kind}"
    return f"{a} {kind} ({parts}{', ...' if len(items) > limit else ''})"


def not_a_tensor(layer: str, value: Any) -> str | None:
    """The one-line error for a named layer whose output is not a tensor (a GRU's ``(output, h)``),
    else ``None``: an activation is one tensor, and which element of a tuple is meant is the
    model's author's call."""
    if isinstance(value, torch.Tensor):
        return None
    return (f"layer '{layer}' returns {describe(value)}, not a tensor: name a module whose output is a tensor, or wrap the "
            "element you mean in one (e.g. an nn.Identity your forward applies to it) and name that")


def output_not_a_tensor(label: str, value: Any) -> str | None:
    """The one-line error for a model whose forward returns a tuple, dict or HF ``ModelOutput``
    instead of its outputs (logits) as one tensor, else ``None``. The advice is a subclass, not a
    wrapper module: a subclass keeps the checkpoints' key names (``fc1.weight``), a wrapper holding
    the model as ``self.m`` would prefix every key (``m.fc1.weight``) and no checkpoint would load."""
    if isinstance(value, torch.Tensor):
        return None
    call = "super().forward(x)"
    if isinstance(value, Mapping):
        key = next((k for k in ("logits", "last_hidden_state") if k in value), next(iter(value), None))
        pick = f"{call}.{key}" if type(value) is not dict and str(key).isidentifier() else f"{call}[{key!r}]"
    else:
        pick = f"{call}[0]"
    return (f"architecture '{label}' returns {describe(value)} from forward, not one tensor of outputs: make forward "
            f"return the logits tensor (e.g. a factory that builds a subclass whose forward returns {pick}; a subclass "
            "keeps the checkpoints' key names, a wrapper module would prefix them)")


def vmap_or_loop(one, params: dict[str, torch.Tensor], x: torch.Tensor, shared: bool, owner: Any, why: str
                 ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """``one(params_of_one_model, x_of_one_model) -> (out, (activation, ...))`` over the model axis of
    ``params`` (``[n_models, ...]`` each) with ``vmap``; a module vmap cannot batch runs one model at a
    time, with one warning per ``owner`` (``why``, then the error). ``x`` is shared by every model or
    ``[n_models, ...]``."""
    try:
        return vmap(one, in_dims=(0, None if shared else 0))(params, x)
    except UserError:  # ours (a layer that is not a tensor): the loop would only raise it again
        raise
    except Exception as e:  # noqa: BLE001 - any vmap failure falls back to the loop
        if not getattr(owner, "_loop_warned", False):
            warnings.warn(f"{why} ({type(e).__name__}: {str(e)[:200]}); running the models one at a time", stacklevel=3)
            owner._loop_warned = True
        n = next(iter(params.values())).shape[0]
        res = [one({k: v[j] for k, v in params.items()}, x if shared else x[j]) for j in range(n)]
        acts = tuple(torch.stack([r[1][i] for r in res]) for i in range(len(res[0][1]))) if res else ()
        return torch.stack([r[0] for r in res]), acts


@dataclass
class ModuleFamily(Family):
    """Wrap a factory ``() -> nn.Module``. Not in the architecture registry: it is built in code."""

    name = "module"
    factory: Callable[[], nn.Module] = None  # type: ignore[assignment]
    input_shape: tuple[int, ...] = ()
    n_out: int = 0
    label: str = "module"
    _template: nn.Module | None = field(default=None, repr=False)
    _loop_warned: bool = field(default=False, repr=False)

    def template(self) -> nn.Module:
        if self._template is None:
            self._template = self.factory().eval()
        return self._template

    def param_shapes(self):
        t = self.template()
        return {k: tuple(v.shape) for k, v in {**dict(t.named_parameters()), **dict(t.named_buffers())}.items()}

    def init_one(self, gen):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
            m = self.factory()
        return {k: v.detach().clone() for k, v in m.state_dict().items()}

    def non_weights(self) -> dict[str, str]:
        """The module's buffers in its state dict (``register_buffer``, a norm's running statistics):
        ``"buffer"`` for float ones, ``"<dtype> buffer"`` otherwise (``"int64 buffer"``)."""
        t = self.template()
        state = t.state_dict()
        return {k: ("buffer" if b.is_floating_point() else f"{str(b.dtype).removeprefix('torch.')} buffer")
                for k, b in t.named_buffers() if k in state}

    def _state_dtypes(self) -> dict[str, torch.dtype]:
        """The non-float entries of the state dict: a zoo stores every entry as float32, and an int
        buffer (an index, a counter) must be an int again before the module uses it."""
        return {k: v.dtype for k, v in self.template().state_dict().items() if not v.is_floating_point()}

    def activation_names(self):
        return [n for n, _ in self.template().named_modules() if n]

    def hidden_permutable(self) -> dict[str, list[tuple[str, int]]]:
        """Hidden-unit permutation groups of the wrapped module: what its class declares
        (a ``hidden_permutable()`` method returning ``{group: [(param, axis), ...]}``), else those
        inferred for an ``nn.Sequential`` of ``Linear`` / ``Conv`` layers joined only by elementwise
        activations (the units between two such layers permute freely); else none."""
        t = self.template()
        declared = getattr(t, "hidden_permutable", None)
        if callable(declared):
            return {str(g): [(str(n), int(a)) for n, a in v] for g, v in declared().items()}
        return sequential_groups(t)

    def hidden_rescalable(self) -> dict[str, list[tuple[str, int]]]:
        """Groups whose units also carry a positive-rescaling symmetry: what the module's class declares (a
        ``hidden_rescalable()`` method), else, for an ``nn.Sequential`` whose groups were inferred, those with
        only positively homogeneous modules between their layers (:func:`sequential_rescalable`); else none
        (a declared ``hidden_permutable()`` says nothing of the activations)."""
        t = self.template()
        declared = getattr(t, "hidden_rescalable", None)
        if callable(declared):
            return {str(g): [(str(n), int(a)) for n, a in v] for g, v in declared().items()}
        return {} if callable(getattr(t, "hidden_permutable", None)) else sequential_rescalable(t)

    def output_shiftable(self) -> list[tuple[str, int]]:
        """What the module's class declares (an ``output_shiftable()`` method), else, for an
        ``nn.Sequential`` (without a declared ``hidden_permutable()``) with two outputs or more, its last child that is a ``Linear`` when only identity,
        dropout or a (log-)softmax follow it (:func:`sequential_output`); else none."""
        t = self.template()
        declared = getattr(t, "output_shiftable", None)
        if callable(declared):
            return [(str(n), int(a)) for n, a in declared()]
        if callable(getattr(t, "hidden_permutable", None)):  # a class of its own: its forward is not its children in order
            return []
        return sequential_output(t) if self.n_out >= 2 else []

    def hidden_normalized(self) -> dict[str, dict]:
        """Layers of an ``nn.Sequential`` (without a declared ``hidden_permutable()``) that a batch or
        layer norm normalizes again (:func:`sequential_normalized`); else none."""
        t = self.template()
        return {} if callable(getattr(t, "hidden_permutable", None)) else sequential_normalized(t)

    def permutation_stop(self) -> str | None:
        """Why an ``nn.Sequential`` without a ``hidden_permutable()`` has no inferred groups: the first
        child that ended the inference after a layer (``"'3' (Flatten)"``), else ``None``."""
        t = self.template()
        return None if callable(getattr(t, "hidden_permutable", None)) else sequential_stop(t)

    def module(self):
        return self.factory()

    def hparams(self):
        return {"arch": "module", "factory": self.label, "input_shape": list(self.input_shape), "n_out": self.n_out}

    def forward(self, params, x, capture: Sequence[str] = ()):
        x, shared = self._split_x(x)
        mod = self.template()
        names = list(capture)
        dtypes = self._state_dtypes()
        if dtypes:  # exact: float32 holds integers up to 2^24
            params = {k: (v.round().to(dtypes[k]) if k in dtypes and v.is_floating_point() else v) for k, v in params.items()}

        def one(p, xi):
            store: dict[str, torch.Tensor] = {}
            handles = [
                mod.get_submodule(n).register_forward_hook(lambda _m, _i, o, n=n: store.__setitem__(n, o))
                for n in names
            ]
            try:
                out = functional_call(mod, p, (xi,))
            finally:
                for h in handles:
                    h.remove()
            bad = output_not_a_tensor(self.label, out)
            if bad:
                raise UserError(bad)
            for n in names:
                bad = not_a_tensor(n, store[n])
                if bad:
                    raise UserError(bad)
            return out, tuple(store[n] for n in names)

        out, acts = vmap_or_loop(one, params, x, shared, self, f"{self.label}: cannot vmap this module")
        return out, dict(zip(names, acts))


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
    groups, _, homogeneous, _ = _walk(module)
    return {g: v for g, v in groups.items() if g in homogeneous} | _flattened(module)


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


def _walk(module: nn.Module) -> tuple[dict[str, list[tuple[str, int]]], str | None, set[str], dict[str, dict]]:
    """:func:`sequential_groups`, the first child that ended an inference (``"'3' (Flatten)"``), the
    groups with only positively homogeneous modules between their layers (:func:`sequential_rescalable`),
    and the layers a norm over their units follows with only such modules between (:func:`sequential_normalized`)."""
    groups: dict[str, list[tuple[str, int]]] = {}
    homogeneous: set[str] = set()
    normalized: dict[str, dict] = {}
    prev: tuple[str, nn.Module] | None = None
    between: list[tuple[str, int]] = []  # per-unit tensors of the norms since ``prev``
    scaled = True  # only positively homogeneous modules since ``prev``
    direct = True  # only identity or dropout since ``prev``: its shift reaches the next norm
    stop = None
    for name, child in module.named_children():
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
                normalized[prev[0]] = {"incoming": _incoming(*prev), "stats": stats, "per_unit": batch, "shift": shift}
            direct = False
            between += [(f"{name}.{t}", 0) for t in NORM_TENSORS if isinstance(getattr(child, t, None), torch.Tensor)]
            scaled = scaled and isinstance(child, HOMOGENEOUS)  # pooling after a Conv keeps the scale; a norm does not
        elif not isinstance(child, ELEMENTWISE):
            if prev is not None and stop is None:
                stop = f"'{name}' ({type(child).__name__})"
            prev, between = None, []
        else:
            scaled = scaled and isinstance(child, HOMOGENEOUS)
            direct = direct and isinstance(child, SHIFT_FREE)
    return groups, stop, homogeneous, normalized


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
