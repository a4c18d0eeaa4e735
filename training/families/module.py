"""Any ``nn.Module`` as a batched family, via ``torch.func.functional_call`` + ``vmap``.

This is the generic path for user models (``fingerprint import``) and for architectures that are
not hand-vectorised. Named activations come from forward hooks on named submodules (like hook
points in interpretability libraries): ``capture=["encoder.0"]`` records that submodule's output.
If a module cannot be vmapped, the family falls back to a per-model loop and says so once.
"""

from __future__ import annotations

import numbers
import operator
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from training.core.errors import UserError
from training.families.base import Family
from training.families.symmetries import (
    attention_mixable,
    feedforward_groups,
    sequential_groups,
    sequential_mixable,
    sequential_normalized,
    sequential_output,
    sequential_rescalable,
    sequential_stop,
)


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


def call_with(mod: nn.Module, params: Mapping[str, torch.Tensor], args: tuple) -> Any:
    """``functional_call(mod, params, args)``, for a module with tied parameters too (an output layer that is the
    embedding): its state dict gives every tied name, which ``functional_call`` refuses unless told not to tie them;
    the values are the same, so each name takes its own (an outside audit, 85: every tied LM refused at import)."""
    seen: dict[int, list[str]] = {}
    for name, t in mod.named_parameters(remove_duplicate=False):
        seen.setdefault(id(t), []).append(name)
    tied = [names for names in seen.values() if len(names) > 1]
    untie = bool(tied) and all(n in params for names in tied for n in names)
    return functional_call(mod, dict(params), args, tie_weights=not untie)


def vmap_or_loop(one, params: dict[str, torch.Tensor], x: torch.Tensor, shared: bool, owner: Any, why: str
                 ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """``one(params_of_one_model, x_of_one_model) -> (out, (activation, ...))`` over the model axis of
    ``params`` (``[n_models, ...]`` each) with ``vmap``; a module vmap cannot batch runs one model at a
    time, with one warning per ``owner`` (``why``, then the error). ``x`` is shared by every model or
    ``[n_models, ...]``."""
    fast = torch.backends.mha.get_fastpath_enabled()
    try:
        # nn.MultiheadAttention's fused inference kernel (a TransformerEncoderLayer in eval mode) and
        # scaled_dot_product_attention's fused CPU kernels have no batching rule: vmap would run them
        # model by model behind a warning; their plain ops (the math backend) batch
        torch.backends.mha.set_fastpath_enabled(False)
        with sdpa_kernel([SDPBackend.MATH]):
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
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


CONTAINERS = (nn.ModuleList, nn.ModuleDict)


def declared_pairs(method: str, groups: Any) -> dict[str, list[tuple[str, int]]]:
    """A module's ``hidden_permutable()`` / ``hidden_rescalable()`` declaration as ``{group: [(param, axis), ...]}``, or a
    one-line error naming the member that is not such a pair (outside audit 118: a GRU's gate blocks declared with the
    dict members ``hidden_mixable()`` takes passed the import and ended ``lineage`` in a traceback)."""
    out: dict[str, list[tuple[str, int]]] = {}
    for g, members in dict(groups).items():
        pairs = []
        for m in members:
            if isinstance(m, (dict, str, bytes)) or not hasattr(m, "__len__") or len(m) != 2 \
                    or not isinstance(m[0], str) or _axis(m[1]) is None:
                raise UserError(f"{method}() group '{g}': member {m!r} is not a (param, axis) pair; {method}() takes "
                                "{group: [(param, axis), ...]}, each member permuted whole along its axis (dict members "
                                "with rows are hidden_mixable()'s only); a recurrent layer's gate blocks (an nn.GRU's or "
                                "nn.LSTM's units, one row in each block) cannot be declared so: its weight fingerprints "
                                "then leave the permutation in (docs/import.md)")
            pairs.append((m[0], _axis(m[1])))
        out[str(g)] = pairs
    return out


def _axis(a: Any) -> int | None:
    """A declared member's axis as an int (an int, a 0-d integer tensor or array, a float such as 1.0: what ``int()``
    took before the check, review 119), or ``None`` for anything else (a bool, a fraction, a dict)."""
    if isinstance(a, bool):
        return None
    try:
        return operator.index(a)
    except TypeError:
        return int(a) if isinstance(a, numbers.Real) and float(a).is_integer() else None


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

    def token_vocab(self, x: torch.Tensor) -> int:
        """The rows of the ``nn.Embedding`` that reads the token ids ``x [B, T]`` themselves (the model's vocabulary,
        which ids the probes never reach may extend: outside audit 112's never-trained tokens and trigger were the
        ids above the probes' largest), else 0 (no embedding reads them as they are)."""
        t = self.template()
        rows: list[int] = []

        def seen(m: nn.Module, args: tuple) -> None:
            if args and isinstance(args[0], torch.Tensor) and args[0].shape == x.shape and torch.equal(args[0].long(), x.long()):
                rows.append(int(m.num_embeddings))

        hooks = [m.register_forward_pre_hook(seen) for m in t.modules() if isinstance(m, nn.Embedding)]
        try:
            with torch.no_grad():
                t(x)
        except Exception:  # noqa: BLE001 (the probes ran at import; a module that refuses this call tells nothing)
            return 0
        finally:
            for h in hooks:
                h.remove()
        return min(rows, default=0)

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
        """Every named submodule but the containers (``nn.ModuleList`` / ``nn.ModuleDict``: never called,
        so nothing comes out of them; their members are listed)."""
        return [n for n, m in self.template().named_modules() if n and not isinstance(m, CONTAINERS)]

    def hidden_permutable(self) -> dict[str, list[tuple[str, int]]]:
        """Hidden-unit permutation groups of the wrapped module: what its class declares
        (a ``hidden_permutable()`` method returning ``{group: [(param, axis), ...]}``), else those
        inferred for an ``nn.Sequential`` of ``Linear`` / ``Conv`` layers joined only by elementwise
        activations (the units between two such layers permute freely); else none."""
        t = self.template()
        declared = getattr(t, "hidden_permutable", None)
        if callable(declared):
            return declared_pairs("hidden_permutable", declared())
        return sequential_groups(t) | feedforward_groups(t)

    def hidden_rescalable(self) -> dict[str, list[tuple[str, int]]]:
        """Groups whose units also carry a positive-rescaling symmetry: what the module's class declares (a
        ``hidden_rescalable()`` method), else, for an ``nn.Sequential`` whose groups were inferred, those with
        only positively homogeneous modules between their layers (:func:`sequential_rescalable`); else none
        (a declared ``hidden_permutable()`` says nothing of the activations)."""
        t = self.template()
        declared = getattr(t, "hidden_rescalable", None)
        if callable(declared):
            return declared_pairs("hidden_rescalable", declared())
        return {} if callable(getattr(t, "hidden_permutable", None)) else sequential_rescalable(t)

    def hidden_mixable(self) -> dict[str, list[tuple[str, int]] | dict]:
        """What the module's class declares (a ``hidden_mixable()`` method, ``Family.hidden_mixable``'s
        format), else every ``nn.MultiheadAttention`` inside it (:func:`attention_mixable`: its forward is
        its own, wherever it sits) and, for an ``nn.Sequential`` (without a declared ``hidden_permutable()``),
        its ``Linear -> Linear`` bottlenecks (:func:`sequential_mixable`)."""
        t = self.template()
        declared = getattr(t, "hidden_mixable", None)
        if callable(declared):
            return dict(declared())
        inferred = attention_mixable(t)
        return inferred if callable(getattr(t, "hidden_permutable", None)) else sequential_mixable(t) | inferred

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
                out = call_with(mod, p, (xi,))
            finally:
                for h in handles:
                    h.remove()
            bad = output_not_a_tensor(self.label, out)
            if bad:
                raise UserError(bad)
            for n in names:
                if n not in store:
                    raise UserError(f"{self.label}: submodule '{n}' did not run in the forward pass, so it has no output "
                                    "to read; name one that runs (each block's own submodules, not a list holding them)")
                bad = not_a_tensor(n, store[n])
                if bad:
                    raise UserError(bad)
            return out, tuple(store[n] for n in names)

        out, acts = vmap_or_loop(one, params, x, shared, self, f"{self.label}: cannot vmap this module")
        return out, dict(zip(names, acts))
