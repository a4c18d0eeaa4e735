"""The :class:`Family` interface, the hook points of a forward pass, and the architecture registry."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from training.core import seeds as rng
from training.core.errors import UserError, unknown
from training.core.validate import check

HOMOGENEOUS_ACTIVATIONS = ("relu", "identity")  # f(c x) = c f(x) for c > 0: a hidden unit's scale moves freely
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
    "tanh": torch.tanh,
    "silu": nn.functional.silu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


def get_activation(name: str, where: str = "model.activation") -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in ACTIVATIONS:
        raise UserError(f"unknown activation '{name}' at '{where}' (valid: {', '.join(sorted(ACTIVATIONS))})")
    return ACTIVATIONS[name]


class HookPoints:
    """The named places of one forward pass (TransformerLens's hook points), where activations are
    captured and edited by name.

    A family's forward names each activation once, where it is computed: ``t = hooks(name, t)``.
    That one call applies ``edit[name]`` (an intervention: the rest of the network reads ``fn(t)``)
    and then records the result in :attr:`acts` when ``name`` is in ``capture``; names neither
    captured nor edited cost nothing. An activation computed in another layout (a grouped conv's
    ``[B, n*C, H, W]``, a flattened ``[n, B*T, d]``) passes ``view`` to its documented shape
    ``[n_models, n_inputs, ...]`` (the shape captured and handed to the edit) and ``unview`` back.
    """

    def __init__(self, capture: Sequence[str] = (), edit: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None):
        self.capture = set(capture)
        self.edit = dict(edit or {})
        self.acts: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, t: torch.Tensor, view: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 unview: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        if name not in self.capture and name not in self.edit:
            return t
        a = view(t) if view else t
        if name in self.edit:
            a = self.edit[name](a)
            t = unview(a) if unview else a
        if name in self.capture:
            self.acts[name] = a
        return t


CACHE_FLOATS = 1 << 19  # 2 MB of float32: about one core's L2 cache (see Family.outputs)


class Family:
    """A batched model family.

    Subclasses are dataclasses whose fields are the architecture's hyper-parameters; ``input_shape``
    and ``n_out`` come from the task. Stacked parameters are a ``dict[str, Tensor]`` with the model
    axis first.
    """

    name: ClassVar[str] = "family"
    # May disjoint shares of a population train at once in several threads, each with its own copy
    # (``dataclasses.replace``) of this family? Yes when a training step keeps no state outside the
    # copy (buffers in the instance are the copy's own); a family wrapping one shared ``nn.Module``
    # does not qualify. See :func:`training.trainer.training_threads`.
    trains_in_threads: ClassVar[bool] = False
    # the class-logit read-out layer, ``{name}.weight [n_out, d]`` and ``{name}.bias [n_out]`` (the
    # built-in families' ``out``), whose class axis :meth:`output_shiftable` names; None: unknown
    readout_layer: ClassVar[str | None] = None
    input_shape: tuple[int, ...]
    n_out: int

    # -- parameters --------------------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-model parameter shapes, in a fixed order."""
        raise NotImplementedError

    def init_one(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Initialise one model's parameters from its own generator."""
        raise NotImplementedError

    def init(self, init_seeds: Sequence[int]) -> dict[str, torch.Tensor]:
        """Stacked parameters ``[n_models, ...]``; model ``j`` depends only on ``init_seeds[j]``."""
        per_model = [self.init_one(rng.generator(rng.INIT, s)) for s in init_seeds]
        return {k: torch.stack([p[k] for p in per_model]) for k in self.param_shapes()}

    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())

    def step_flops(self, batch_size: int) -> float:
        """About how many floating-point operations one model's training step takes (forward and
        backward: ``6 *`` multiply-adds per input), for :func:`training.trainer.training_threads`; 0: no
        estimate."""
        return 0.0

    def step_floats(self, batch_size: int) -> int:
        """Floats one model's training step touches (parameters, gradient, two Adam moments and the
        activations of ``batch_size`` inputs), for :func:`training.trainer.group_size`; 0: no
        estimate, the population trains as one group."""
        return 0

    # -- forward -----------------------------------------------------------------------------
    def activation_names(self) -> list[str]:
        """Named hidden activations that ``forward`` can capture."""
        raise NotImplementedError

    def forward(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, capture: Sequence[str] = ()
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the population.

        ``x`` is either shared by all models, ``[n_inputs, *input_shape]``, or per model,
        ``[n_models, n_inputs, *input_shape]``. Returns outputs ``[n_models, n_inputs, n_out]`` and
        the captured activations, each ``[n_models, n_inputs, ...]``.

        Families that support interventions also take ``edit={name: fn}``: the activation ``name``
        (same shape as captured) is replaced by ``fn(activation)`` before the rest of the network
        reads it. ``mlp``, ``cnn`` and ``transformer`` do, all through :class:`HookPoints`;
        :func:`supports_edit` tells.
        """
        raise NotImplementedError

    def __call__(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return self.forward(params, x)[0]

    @torch.no_grad()
    def outputs(self, params: dict[str, torch.Tensor], x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Outputs ``[n_models, n_inputs, n_out]`` on shared inputs ``x [n_inputs, ...]``, without grad.

        On the CPU the work goes in slices of models and of inputs small enough that a slice's widest
        activation (about ``models * inputs * sqrt(n_params)`` floats) stays in a core's cache: for
        small models the forward pass is memory-bound, and a whole population's activations (a
        sweep's evaluation: 1,024 models x 4,096 inputs x 136 units is 2 GB) would stream through
        memory. A model's outputs do not depend on the slice it is computed in.
        """
        n = next(iter(params.values())).shape[0] if params else 0
        if len(x) == 0 or n == 0:
            return self(params, x)
        if x.device.type != "cpu":
            return torch.cat([self(params, x[i : i + chunk]) for i in range(0, len(x), chunk)], 1)
        width = max(8, math.isqrt(sum(v[0].numel() for v in params.values())))
        inputs = max(1, min(chunk, len(x), CACHE_FLOATS // width))
        per = max(1, CACHE_FLOATS // (inputs * width))
        result = None
        for j in range(0, n, per):
            p = params if per >= n else {k: v[j : j + per] for k, v in params.items()}
            for i in range(0, len(x), inputs):
                part = self._outputs_slice(p, x[i : i + inputs])
                if result is None:  # contiguous whatever the slices' layout: consumers (argmax, plugins) expect it
                    result = torch.empty((n, len(x), *part.shape[2:]), dtype=part.dtype, device=part.device)
                result[j : j + per, i : i + inputs].copy_(part)
        return result

    def _outputs_slice(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """One cache-sized slice of :meth:`outputs` (no grad, shared inputs); a family may override it
        with in-place arithmetic (fresh megabyte-sized results cost page faults on every slice)."""
        return self(params, x)

    def value_and_grad(
        self,
        params: dict[str, torch.Tensor],
        x: torch.Tensor,
        objective: Callable[[torch.Tensor], torch.Tensor],
        grads: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """The training step's gradient: ``objective(outputs [n, B, n_out]) -> scalar``.

        Writes d objective / d params into the preallocated ``grads`` (``{name: [n, ...]}``, the
        optimiser's buffers) and returns the objective. The objective is a sum of per-model terms,
        so model ``j``'s gradient is its own. This default runs autograd; a family may override
        it with a hand-written backward that gives the same gradients faster.
        """
        total = objective(self(params, x))
        # allow_unused: some parameters may not reach the loss (e.g. queries under constant attention)
        gs = torch.autograd.grad(total, list(params.values()), allow_unused=True)
        for (k, _), g in zip(params.items(), gs):
            grads[k].zero_() if g is None else grads[k].copy_(g)
        return total.detach()

    # -- single model ------------------------------------------------------------------------
    def module(self) -> nn.Module:
        """A plain ``nn.Module`` for one model; ``load_state_dict`` takes one model's slice."""
        raise NotImplementedError

    def readout_positions(self) -> list[int] | None:
        """The sequence positions whose representations feed the output, for families whose
        per-position activations are ``[n, B, T, d]``; ``None`` when activations have no position axis
        (or it is unknown, as for imported modules)."""
        return None

    def token_embedding(self) -> str | None:
        """The name of the parameter ``[n, vocab, d]`` whose rows are the vectors of the input token
        ids, for families whose inputs are token sequences; ``None`` otherwise (vector inputs, or
        unknown, as for imported modules)."""
        return None

    def hidden_permutable(self) -> dict[str, list[tuple[str, int]]]:
        """Hidden-unit permutation symmetry: group -> [(param name, axis)] permuted together.

        Used by weight matching and by permutation-invariance tests. Empty when unknown.
        """
        return {}

    def hidden_rescalable(self) -> dict[str, list[tuple[str, int]]]:
        """Groups of units that carry a positive-rescaling symmetry: multiplying a unit's incoming
        weights and bias (axis 0) by ``c > 0`` and its outgoing weights (axis 1: columns; axis -1: rows,
        the other side of a bilinear form) by ``1 / c`` leaves the function unchanged. The groups of
        :meth:`hidden_permutable` with only positively homogeneous modules (ReLU, leaky ReLU, identity,
        pooling, dropout) and no norm between the layer and the next; a transformer's query/key and
        value/output dimensions. Weight-space fingerprints balance them
        (:func:`fingerprint.extractors.mechanistic.balance_units`). Empty when unknown."""
        return {}

    def hidden_mixable(self) -> dict[str, list[tuple[str, int]] | dict]:
        """Groups of ``k`` units with nothing but linear maps between two layers, so that any invertible
        ``k x k`` matrix ``G`` mixing them leaves the function unchanged: the incoming weights and bias
        (axis 0, rows) times ``G``, the outgoing weights (axis 1, columns) times ``G^-1``, or outgoing rows
        (axis -1, the other side of a bilinear form: attention's keys against its queries) times ``G^-T``.
        ``{group: [(param, axis), ...]}``, or ``{group: {"members": [...], "blocks": h}}`` when the units
        mix only within ``h`` equal blocks (attention's heads); a member may also be a dict for other
        layouts, ``{"param", "axis", "side": "in" | "out", "heads": axis, "rows": [start, stop]}``
        (docs/extractors.md, "Units that mix freely"). A ``Linear -> Linear`` bottleneck is one;
        positive rescalings (:meth:`hidden_rescalable`) are the diagonal ``G``. Weight-space fingerprints
        put each group at one point of its orbit
        (:func:`fingerprint.extractors.mechanistic.canonical_mixing`). Empty when unknown."""
        return {}

    def output_shiftable(self) -> list[tuple[str, int]]:
        """The output layer's entries ``[(param, axis)]`` along whose class axis a common shift leaves
        the softmax unchanged: adding one vector ``u`` to every class's weight row and one number to
        every class's bias adds ``u . h + c`` to every logit alike, so the probabilities, the predictions
        and the loss stay the same (an output bias initialised at the log class prior trains into the
        same function). Outputs of two or more are read as class logits here, as the behavioural
        fingerprints read them. Weight-space fingerprints centre them
        (:func:`fingerprint.extractors.mechanistic.centre_shifts`). Here: :attr:`readout_layer`'s weight
        and bias, with two outputs or more; empty when unknown."""
        if self.readout_layer is None or self.n_out < 2:
            return []
        return [(f"{self.readout_layer}.weight", 0), (f"{self.readout_layer}.bias", 0)]

    def hidden_normalized(self) -> dict[str, dict]:
        """Layers whose output a norm normalizes again, so that their scale is free: ``{layer:
        {"incoming": [(param, 0), ...], "stats": [(buffer, power), ...], "per_unit": bool}}``. A batch
        norm (``per_unit``) gives each output unit its own free scale ``c > 0`` (its incoming weights and
        bias times ``c``, its running mean times ``c`` and running variance times ``c**2``); a layer norm
        one scale for the whole layer. ``"shift"`` (when nothing but identity or dropout lies between the
        layer and the norm): ``{"kind": "layer"}``, a layer norm removes a common shift of every unit
        (one vector added to every incoming row, one number to every bias), or ``{"kind": "batch",
        "mean": running_mean}``, a batch norm in eval mode removes a unit's bias shift matched in its
        running mean. Weight-space fingerprints normalize them
        (:func:`fingerprint.extractors.mechanistic.normalize_units`). Empty when unknown."""
        return {}

    def permutation_stop(self) -> str | None:
        """Why :meth:`hidden_permutable` found no group where one could be inferred (the module that
        ended the inference, ``"'3' (Flatten)"``), for the messages; ``None`` here: nothing inferred."""
        return None

    def non_weights(self) -> dict[str, str]:
        """State entries that are not trained weights, and what each is: ``{name: "buffer"}`` (a
        float buffer, e.g. a norm's running mean) or ``{name: "int64 buffer"}`` (its dtype).
        Weight-space extractors leave them out; the forward pass still uses them. Built-in
        families have none."""
        return {}

    # -- description -------------------------------------------------------------------------
    def training_path(self, device: str = "cpu") -> str:
        """Which code computes this family's training step on ``device``: ``"torch"`` here; a family
        with its own kernels says when they are used (:meth:`training.families.mlp.MLPFamily.training_path`).
        Recorded in each shard: two paths agree only to float rounding, so a model's identity (its
        seeds) holds within one path."""
        return "torch"

    def hparams(self) -> dict[str, Any]:
        d = dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}
        d["input_shape"] = list(self.input_shape)
        return {"arch": self.name, **d}

    def _split_x(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``(x, shared)``: whether ``x`` is shared by all models ``[n_inputs, *input_shape]`` or per model."""
        nd = len(self.input_shape)
        if x.dim() == nd + 1:
            return x, True
        if x.dim() == nd + 2:
            return x, False
        raise ValueError(f"{self.name}: input of shape {tuple(x.shape)} does not match input_shape {self.input_shape}")


def supports_edit(family: Family) -> bool:
    """Whether ``family.forward`` takes ``edit=`` (activation replacement for interventions)."""
    import inspect

    try:
        return "edit" in inspect.signature(family.forward).parameters
    except (TypeError, ValueError):
        return False


_FAMILIES: dict[str, type[Family]] = {}


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: make an architecture available by ``cls.name``."""
    _FAMILIES[cls.name] = cls
    return cls


def list_families() -> dict[str, type[Family]]:
    return dict(_FAMILIES)


def get_family(arch: str, input_shape: Sequence[int], n_out: int, params: dict | None = None) -> Family:
    """Build a family from its name and hyper-parameters, with readable errors."""
    if arch not in _FAMILIES:
        raise unknown("architecture", arch, _FAMILIES)
    cls = _FAMILIES[arch]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in ("input_shape", "n_out")}
    params = dict(params or {})
    for k in params:
        if k not in fields:
            raise UserError(f"unknown config key 'model.{k}' for arch '{arch}' (valid: {', '.join(sorted(fields))})")
    import typing

    hints = typing.get_type_hints(cls)
    clean = {k: check(v, hints[k], f"model.{k}") for k, v in params.items()}
    fam = cls(input_shape=tuple(int(s) for s in input_shape), n_out=int(n_out), **clean)
    validate = getattr(fam, "validate", None)
    if validate:
        validate()
    return fam
