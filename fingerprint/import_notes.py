"""The one-line notes and short reasons ``fingerprint import`` prints beside the zoo it writes:
what it read other than a plain state_dict, duplicates, an unrecorded shared data order, outputs
read as logits or at every position, an attention without its symmetries declared, and the
checkpoints ``--skip-bad`` left out."""

from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from analysis.values import missing
from fingerprint.import_checks import WRAPPER_PREFIXES


def logits_note(n_out: int | None, labelled: Any) -> str:
    """The one line saying that two or more outputs are read as class logits when no ``--data`` says
    otherwise (an outside audit: a regression imported without it lost a common offset of its outputs
    from every fingerprint, silently), else ``""``."""
    if labelled is not None or not n_out or n_out < 2:
        return ""
    return (f"the models' {n_out} outputs are read as class logits (their log-softmax; a common shift of them is "
            "taken as invisible): for regression outputs pass --data with float targets")


def forward_notes(template: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[str, str]:
    """:func:`positions_note` and :func:`attention_note` from one forward of a copy of ``template`` (a forward that keeps
    state leaves the template as it was) on two rows of the first probe set, recording its softmaxes; ``("", "")``
    without probes or when that forward fails (the probes ran through it at import; a forward that needs more rows
    tells nothing)."""
    if not inputs:
        return "", ""
    try:
        model = copy.deepcopy(template)
    except Exception:  # noqa: BLE001 (a module that cannot be copied: the template itself)
        model = template
    seen = _Softmaxes()
    try:
        with torch.no_grad(), seen:
            out = model.eval()(next(iter(inputs.values()))[:2])
    except Exception:  # noqa: BLE001
        return "", ""
    return _positions_text(out), _attention_text(template, seen)


def positions_note(template: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> str:
    """The one line saying that a forward returning outputs at every position (``[batch, T, n_out]``) has each of them
    read by the output fingerprints (outside audit 112: a model trained at its last position returned all 8, and 7 it
    never trained at diluted ``ood-outputs`` from 18 SDs to a continuum), else ``""`` (:func:`forward_notes`)."""
    return forward_notes(template, inputs)[0]


def attention_note(template: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> str:
    """The one line saying that a forward computes attention (a softmax over square ``[..., T, T]`` scores, or a fused
    attention) outside ``nn.MultiheadAttention`` while the module declares no ``hidden_mixable()``, so that the weight
    fingerprints read two models that differ only by a re-basis of a head's queries and keys as different (outside
    audit 112, F7: a hand-written attention that declared nothing was imported without a word), else ``""``
    (:func:`forward_notes`)."""
    return forward_notes(template, inputs)[1]


def _positions_text(out: Any) -> str:
    """:func:`positions_note`'s line for a forward's output ``out``."""
    if not isinstance(out, torch.Tensor) or out.dim() < 3:
        return ""
    shape = list(out.shape[1:])
    # (review 116: "(positions?)" misnamed a convolution's [B, C, H, W], whose classes are not the last axis)
    return (f"the models' outputs are {['batch', *shape]}: the output fingerprints read the last axis as the outputs "
            f"(the classes) at every one of the {math.prod(shape[:-1])} entries before it (positions? pixels?); a "
            "model trained at its last position alone reads best from a factory whose forward returns that "
            "position's (out[:, -1]), and one whose classes are another axis from one that moves them last")


class _Softmaxes(TorchFunctionMode):
    """Records the attention a forward computes: ``shapes``, the ``[..., T_q, T_k]`` scores of each softmax over the
    last axis of a tensor of 3 axes or more, and ``fused``, those of each fused attention (review 113: a fused
    attention was read by its query's shape, and a softmax over channels, ``[B, K, H, W]``, counted)."""

    def __init__(self):
        super().__init__()
        self.shapes: list[list[int]] = []
        self.fused: list[list[int]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            q, k = (args[i] if len(args) > i else kwargs.get(name) for i, name in ((0, "query"), (1, "key")))
            if isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor):
                self.fused.append([*q.shape[:-1], k.shape[-2]])  # attention whatever its shape (cross-attention too)
        elif func in _SOFTMAXES:
            x = args[0] if args else kwargs.get("input", kwargs.get("self"))
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if isinstance(x, torch.Tensor) and x.dim() >= 3 and isinstance(dim, int) and dim % x.dim() == x.dim() - 1:
                self.shapes.append(list(x.shape))
        return func(*args, **kwargs)


_SOFTMAXES = {torch.softmax, torch.Tensor.softmax, torch.nn.functional.softmax}


def _attention_text(template: torch.nn.Module, seen: _Softmaxes) -> str:
    """:func:`attention_note`'s line for what a forward of ``template`` computed (``seen``)."""
    if callable(getattr(template, "hidden_mixable", None)) \
            or any(isinstance(m, torch.nn.MultiheadAttention) for m in template.modules()):
        return ""
    square = seen.fused + [s for s in seen.shapes if s[-1] >= 2 and s[-1] == s[-2]]
    if not square:
        return ""
    return (f"the forward computes attention outside nn.MultiheadAttention (a softmax over {['...', *square[0][-2:]]} "
            "scores) and the module declares no hidden_mixable(): the weight fingerprints read two models that differ "
            "only by a re-basis of a head's queries and keys (or values and outputs) as different; declare its heads "
            "(docs/import.md, \"Symmetries a module can declare\")")


def short_reason(message: str, path: Path) -> str:
    """A refused checkpoint's reason in a few words, for the one ``--skip-bad`` line: its message
    without the leading ``checkpoint 'PATH'`` and without the advice after the first ':' or ';'."""
    text = message.removeprefix(f"checkpoint '{path}' ")
    for sep in (": ", "; "):
        text = text.split(sep)[0]
    return text.strip()


def skipped_note(skipped: list[tuple[str, str]], n: int, noun: str = "checkpoints") -> str:
    """The one line naming what ``--skip-bad`` left out, with each file's reason, else ``""``."""
    if not skipped:
        return ""
    shown = "; ".join(f"{name} ({why})" for name, why in skipped[:8]) + ("; ..." if len(skipped) > 8 else "")
    return f"skipped {len(skipped)} of {n} {noun} (--skip-bad; their CSV rows ignored): {shown}"


def weights_digest(sd: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names and bytes (any dtype, bfloat16 too): equal for exactly equal weights."""
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def duplicates_note(ids: list[str], digests: list[str]) -> str:
    """One line naming models whose weights are exactly the same (their :func:`weights_digest`
    equal: a checkpoint copied twice, the two would look like the closest of relatives), else ``""``."""
    seen: dict[str, str] = {}
    pairs = []
    for mid, digest in zip(ids, digests):
        if digest in seen:
            pairs.append(f"{mid} = {seen[digest]}")
        else:
            seen[digest] = mid
    if not pairs:
        return ""
    shown = ", ".join(pairs[:4]) + (", ..." if len(pairs) > 4 else "")
    return (f"{len(pairs)} model{'s have' if len(pairs) > 1 else ' has'} exactly the weights of another ({shown}): "
            "a checkpoint copied twice? Duplicates read as the closest of relatives")


def shared_order_note(meta: dict[str, Any] | None) -> str:
    """A note for children of parents (``parent_id``) imported without a ``data_seed`` column: the
    ninth outside audit's fine-tunes, child j of every parent trained with data-order seed j and
    nothing else different, read as a difference cutting across the families in 10 of 15 such
    populations when the order was not recorded (README, "Say which models share a data order")."""
    parents = (meta or {}).get("parent_id")
    if parents is None or "data_seed" in meta or all(missing(p) for p in parents):  # (review 116: None, NaN)
        return ""
    return ("children of parents (parent_id) and no data_seed column: if children of different parents "
            "share a data-order or batch seed (child j of every parent trained with seed j), record it as data_seed "
            "(or report with --strata COLUMN), or the label-free tests can read the shared order as a difference "
            "that cuts across the families")


def format_note(unwrapped: dict[str, int], stripped: dict[str, int], n: int) -> str:
    """One line on what the import read other than a plain state_dict file: the top-level keys it
    took the state_dicts from, and the wrapper prefixes it stripped, with how many of ``n`` files."""
    of = lambda c: "every checkpoint" if c == n else f"{c} of {n} checkpoints"  # noqa: E731
    parts = [f"read the state_dict under key '{k}' of {of(c)}" for k, c in unwrapped.items()]
    parts += [f"stripped the key prefix '{p}' ({', '.join(w for q, w in WRAPPER_PREFIXES.items() if q in p)}) from "
              f"{of(c)}" for p, c in stripped.items()]
    return "; ".join(parts)
