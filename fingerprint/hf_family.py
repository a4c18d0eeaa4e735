"""Hugging Face causal language models as a batched family (the zoos of ``fingerprint import --hf``).

An HF zoo stores each model's ``config.json`` as data in its manifest (``family.config``), never
code: the architecture is the class ``transformers`` itself maps that config's ``model_type`` to
(``AutoModelForCausalLM``, with ``auto_map`` removed and ``trust_remote_code=False``), so opening
and running an HF zoo imports nothing the zoo names. ``transformers`` is an optional extra
(``pip install -e '.[hf]'``) and is imported only when an HF zoo's models run.

Inputs are token ids ``[B, T]``, left-padded with the tokenizer's pad id: the attention mask is the
prompt after its leading run of pad tokens, and position ids count from the first real token. The
models run over the stacked parameters with ``torch.func.functional_call`` + ``vmap`` (eager
attention, which has a batching rule), else one at a time with one warning. Outputs are the logits
at the last position (``readout = "last"``: ``[n_models, B, vocab]``) or at every position
(``"all"``: ``[n_models, B, T, vocab]``, zero at padded positions so that they are equal for every
model). Named activations: ``embed`` and ``block{i}.resid_post`` (the hidden states after each
block, ``[n_models, B, T, d_model]``; the last one after the final norm, as HF returns it).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from training.core.errors import UserError
from training.families.base import Family
from training.families.module import vmap_or_loop

INSTALL_HINT = "pip install -e '.[hf]' (or pip install transformers)"
READOUTS = ("last", "all")


def require_transformers(what: str = "--hf") -> Any:
    """The ``transformers`` module, or the one-line error saying which extra installs it."""
    try:
        import transformers
    except ImportError:
        raise UserError(f"{what} needs the optional package 'transformers': {INSTALL_HINT}") from None
    return transformers


def build_config(config: dict[str, Any], where: str) -> Any:
    """A transformers config object from a stored ``config.json`` dict: only classes built into
    transformers (chosen by ``model_type``), never code the config names (``auto_map`` is dropped)."""
    tf = require_transformers()
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    d = {k: v for k, v in config.items() if k != "auto_map"}
    mtype = d.get("model_type")
    if not isinstance(mtype, str) or mtype not in CONFIG_MAPPING:
        raise UserError(f"{where}: model_type {mtype!r} is not built into transformers {tf.__version__} (code named by a "
                        "model is never imported: trust_remote_code stays off)")
    if mtype not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UserError(f"{where}: model_type '{mtype}' has no causal-LM class in transformers; --hf imports causal LMs "
                        "(gpt2, gpt_neox, llama, ...; masked LMs such as MultiBERTs: see docs/import.md)")
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    archs = d.get("architectures") or []
    if archs and not any(a in causal for a in archs):
        raise UserError(f"{where}: architecture {archs[0]} is not a causal LM; --hf imports causal LMs "
                        "(GPT2LMHeadModel, GPTNeoXForCausalLM, LlamaForCausalLM, ...; masked LMs such as MultiBERTs: "
                        "see docs/import.md)")
    return CONFIG_MAPPING[mtype].from_dict(d)


def build_model(config: dict[str, Any], where: str = "HF zoo") -> nn.Module:
    """The causal LM for ``config`` (random weights; extractors pass the stored ones), eager attention."""
    tf = require_transformers()
    cfg = build_config(config, where)
    with torch.random.fork_rng(devices=[]):  # its random init must not move the caller's global RNG
        torch.manual_seed(0)
        model = tf.AutoModelForCausalLM.from_config(cfg, trust_remote_code=False, attn_implementation="eager")
    return model.eval()


def param_names(model: nn.Module) -> list[str]:
    """The model's parameters, each once (a tied output head is its embedding): the names stored."""
    return [n for n, _ in model.named_parameters()]


def left_padding_mask(x: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(attention_mask, position_ids)``, both like ``x [..., T]``: a position is real from the first
    token that is not ``pad_id`` on; positions count from there."""
    mask = (x != pad_id).long().cummax(-1).values
    return mask, (mask.cumsum(-1) - 1).clamp_min(0)


GATED = ("gate_proj", "up_proj", "down_proj")  # a gated MLP's layers: down_proj(act(gate_proj(x)) * up_proj(x))
# an MLP's two Linear layers, out(act(in(x))), by the names transformers gives them in a block with an elementwise act
PAIRS = (("dense_h_to_4h", "dense_4h_to_h"), ("c_fc", "c_proj"), ("fc_in", "fc_out"), ("fc1", "fc2"))
ACT_NAMES = ("act", "act_fn", "activation_fn", "gelu_impl")
ELEMENTWISE_ACTS = ("gelu", "silu", "swish", "relu", "tanh", "sigmoid")  # transformers' activation classes, by name


def _linear_pair(m: nn.Module, a: str, b: str) -> bool:
    """``m``'s children ``a`` and ``b`` are ``Linear`` layers with ``a``'s outputs ``b``'s inputs."""
    la, lb = getattr(m, a, None), getattr(m, b, None)
    return isinstance(la, nn.Linear) and isinstance(lb, nn.Linear) and la.out_features == lb.in_features


def _elementwise_act(act: Any) -> bool:
    """A transformers MLP's activation acts on each unit alone (its class names a GELU, SiLU, ReLU, ...)."""
    return isinstance(act, nn.Module) and any(k in type(act).__name__.lower() for k in ELEMENTWISE_ACTS)


def _rows(m: nn.Module, pre: str, layer: str) -> list[tuple[str, int]]:
    """A ``Linear``'s units' incoming entries: its weight's rows and its bias, if any."""
    return [(f"{pre}{layer}.weight", 0)] + ([(f"{pre}{layer}.bias", 0)] if getattr(m, layer).bias is not None else [])


@dataclass
class HFFamily(Family):
    """A population of one HF causal-LM architecture over stacked parameters ``{name: [n, ...]}``."""

    name = "hf"
    config: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] = (1,)
    n_out: int = 0
    pad_id: int = 0
    readout: str = "last"
    _template: nn.Module | None = field(default=None, repr=False)
    _loop_warned: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.readout not in READOUTS:
            raise UserError(f"unknown readout '{self.readout}' (valid: {', '.join(READOUTS)})")

    @property
    def vocab(self) -> int:
        """Rows of the embedding (the anomalous-inputs extractor draws random tokens below it)."""
        return int(self.n_out)

    @property
    def n_layers(self) -> int:
        return int(getattr(self.template().config, "num_hidden_layers"))

    def template(self) -> nn.Module:
        if self._template is None:
            self._template = build_model(self.config)
        return self._template

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: tuple(p.shape) for n, p in self.template().named_parameters()}

    def init_one(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        raise UserError("HF zoos are imported, not trained here")

    def activation_names(self) -> list[str]:
        return ["embed"] + [f"block{i}.resid_post" for i in range(self.n_layers)]

    def module(self) -> nn.Module:
        return build_model(self.config)

    def token_embedding(self) -> str | None:
        """The stored name of the input embedding (``transformer.wte.weight`` for gpt2,
        ``model.embed_tokens.weight`` for llama): the parameter ``get_input_embeddings()`` holds."""
        mod = self.template()
        emb = mod.get_input_embeddings()
        weight = getattr(emb, "weight", None)
        return next((n for n, p in mod.named_parameters() if p is weight), None)

    def hidden_permutable(self) -> dict[str, list[tuple[str, int]]]:
        """Each block's MLP units: GPT-2's (``Conv1D`` ``c_fc``: ``x W + b``, the units on axis 1, its bias,
        ``c_proj``'s rows), a gated MLP's (Llama, Mistral, Qwen2, Gemma: ``gate_proj``'s and ``up_proj``'s
        rows, ``down_proj``'s columns, ``act(gate) * up`` unit by unit) and a plain one's, two ``Linear``
        layers by the names transformers gives them (:data:`PAIRS`: GPT-NeoX, Falcon, Bloom, GPT-Neo,
        GPT-BigCode, GPT-J, OPT; the first's rows and bias, the second's columns), when the block's
        activation acts on each unit alone: relabelling the units leaves the model as it was (an outside
        audit, 77, found Falcon, Bloom, GPT-Neo, GPT-J, OPT and GPT-BigCode without any). Weight matching,
        ``aligned-weights`` and ``fingerprint lineage``'s weight tests use them (attention's heads are left
        alone, as for the built-in transformer). Other classes: none. GPT-2's axis-0 members are ``c_fc``'s bias
        and ``c_proj``'s rows, so lineage's per-unit scaling (which reads axis 0 as incoming) normalizes those:
        another transform of each unit, equivariant to relabelling, so its tests stay exact (a review)."""
        out: dict[str, list[tuple[str, int]]] = {}
        for name, m in self.template().named_modules():
            pre = f"{name}."
            if not _elementwise_act(next((getattr(m, a) for a in ACT_NAMES if hasattr(m, a)), None)):
                continue
            kind = type(m).__name__
            pair = next(((a, b) for a, b in PAIRS if _linear_pair(m, a, b)), None)
            if kind == "GPT2MLP":
                out[f"{pre}c_fc"] = [(f"{pre}c_fc.weight", 1), (f"{pre}c_fc.bias", 0), (f"{pre}c_proj.weight", 0)]
            elif kind.endswith("MLP") and all(isinstance(getattr(m, k, None), nn.Linear) for k in GATED):
                out[f"{pre}up_proj"] = [*_rows(m, pre, "gate_proj"), *_rows(m, pre, "up_proj"), (f"{pre}down_proj.weight", 1)]
            elif pair is not None:  # GPT-NeoX, Falcon, Bloom; GPT-Neo, GPT-BigCode; GPT-J; OPT's decoder layer
                out[f"{pre}{pair[0]}"] = [*_rows(m, pre, pair[0]), (f"{pre}{pair[1]}.weight", 1)]
        return out

    def hidden_mixable(self) -> dict[str, dict]:
        """GPT-2's attention heads (``GPT2Attention``, self-attention with absolute positions): any
        invertible ``G`` on a head's query columns of the fused ``c_attn`` (a ``Conv1D``: ``x W + b``, the
        units on axis 1) with ``G^-T`` on its key columns, and on its value columns with ``G^-T`` on
        ``c_proj``'s rows, leaves the model as it was (``Family.hidden_mixable``). Other architectures
        rotate their queries and keys by position (RoPE), which only some ``G`` commute with: none."""
        out: dict[str, dict] = {}
        for name, m in self.template().named_modules():
            if type(m).__name__ != "GPT2Attention" or getattr(m, "is_cross_attention", True):
                continue
            e, pre = int(m.embed_dim), f"{name}."

            def part(i: int, side: str) -> list[dict]:
                rows = [i * e, (i + 1) * e]
                return [{"param": f"{pre}c_attn.weight", "axis": 1, "side": side, "rows": rows},
                        {"param": f"{pre}c_attn.bias", "axis": 0, "side": side, "rows": rows}]

            out[f"{pre}qk"] = {"members": part(0, "in") + part(1, "out"), "blocks": int(m.num_heads)}
            out[f"{pre}vo"] = {"members": part(2, "in") + [{"param": f"{pre}c_proj.weight", "axis": 0, "side": "out"}],
                               "blocks": int(m.num_heads)}
        return out

    def all_positions(self) -> "HFFamily":
        """The same models with logits at every position (``readout = "all"``), sharing the built
        template: per-token log-probs (``token-logprobs``) from a zoo imported with ``--readout last``."""
        return replace(self, readout="all", _loop_warned=self._loop_warned)

    def hparams(self) -> dict[str, Any]:
        return {"arch": "hf", "model_type": self.config.get("model_type"), "input_shape": list(self.input_shape),
                "n_out": self.n_out, "readout": self.readout}

    def forward(self, params: dict[str, torch.Tensor], x: torch.Tensor,
                capture: Sequence[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits ``[n, B, vocab]`` (``"last"``) or ``[n, B, T, vocab]`` (``"all"``) for tokens
        ``x [B, T]`` (shared) or ``[n, B, T]`` (per model), and the captured hidden states."""
        x, shared = self._split_x(x)
        x = x.long()
        names = list(capture)
        valid = self.activation_names()
        bad = next((c for c in names if c not in valid), None)
        if bad is not None:
            raise UserError(f"unknown activation '{bad}' (valid: {', '.join(valid)})")
        mod = self.template()
        want_hidden = bool(names)
        last = self.readout == "last"
        keeps = "logits_to_keep" in inspect.signature(mod.forward).parameters  # only the last logits: V x fewer floats

        def one(p: dict[str, torch.Tensor], xi: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
            mask, pos = left_padding_mask(xi, self.pad_id)
            kw = {"logits_to_keep": 1} if last and keeps else {}
            o = functional_call(mod, p, (), {"input_ids": xi, "attention_mask": mask, "position_ids": pos,
                                             "output_hidden_states": want_hidden, "use_cache": False, **kw})
            hs = o.hidden_states if want_hidden else ()
            keep = mask[..., None].to(o.logits.dtype)
            logits = o.logits[:, -1] if last else o.logits * keep  # the same zeros at padding for every model
            picked = tuple(hs[0 if n == "embed" else int(n[5:].split(".")[0]) + 1] * keep for n in names)
            return logits, picked

        out, acts = vmap_or_loop(one, params, x, shared, self, f"HF model '{self.config.get('model_type')}': cannot vmap it")
        return out, dict(zip(names, acts))


def family_from_spec(spec: dict[str, Any]) -> HFFamily:
    """The family an HF zoo's manifest ``family`` entry describes."""
    return HFFamily(config=dict(spec.get("config") or {}), input_shape=tuple(spec.get("input_shape") or (1,)),
                    n_out=int(spec.get("n_out", 0)), pad_id=int(spec.get("pad_id", 0)),
                    readout=str(spec.get("readout", "last")))
