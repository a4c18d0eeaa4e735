"""Language-model fingerprints: per-token log-probabilities on a declared prompt set.

``token-logprobs`` runs every model over a set of prompts (one of the zoo's probe sets, or a file
of token ids) and records, at every position, the log-probability each model gives the prompt's own
next token (or ``k`` declared tokens, or only the tokens of a declared continuation): the
"per-token log-prob" view of a causal LM. It works on any population whose models read token ids
``[B, T]`` and can give logits at every position ``[n, B, T, vocab]``: the `transformer` family
trained as a decoder-only LM (``readout = "all"``, ``tiny-lm``) and ``import --hf`` zoos (whatever
their stored readout; the models are run with logits at every position). One batched forward pass
per slice of prompts for the whole population.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fingerprint.extractor_spec import FILE_DIGEST
from fingerprint.extractors.common import probes
from fingerprint.registry import extractor
from training.core.errors import UserError

SLICE_FLOATS = 1 << 25  # logits held at once: models x prompts x T x vocab (128 MB of float32)


@dataclass(frozen=True)
class Prompts:
    """Prompts laid out for a causal LM: token ids ``x [P, T]`` and the positions scored.

    ``score [P, T - 1]`` is True where the output at position ``t`` is scored on the token at
    ``t + 1`` (``target [P, T - 1]``, i.e. ``x[:, 1:]``)."""

    x: torch.Tensor
    score: torch.Tensor

    @property
    def target(self) -> torch.Tensor:
        return self.x[:, 1:]


def read_prompt_file(value: str, vocab: int, T: int) -> list[list[int]]:
    """Prompts from a file of token ids (one prompt a line, ids separated by spaces or commas, blank
    lines and ``#`` comments skipped); ``value`` may carry the digest that resolving the parameter
    appends (:func:`fingerprint.extractor_spec.file_with_digest`)."""
    path = Path(value.split(FILE_DIGEST)[0])
    if not path.is_file():
        raise UserError(f"prompt_file '{path}' of extractor 'token-logprobs' is not a file")
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        try:
            ids = [int(t) for t in re.split(r"[\s,]+", line)]
        except ValueError:
            raise UserError(f"{path}:{i}: prompt files hold token ids (e.g. '5 12 7'), got {line[:40]!r}; for text, import it "
                            "with `fingerprint import --hf --probes-text NAME=FILE` and pass prompts=NAME") from None
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise UserError(f"{path}:{i}: token id {bad} is outside the models' vocabulary [0, {vocab})")
        if len(ids) > T:
            raise UserError(f"{path}:{i}: a prompt of {len(ids)} tokens; the models take at most {T}")
        out.append(ids)
    if not out:
        raise UserError(f"prompt_file '{path}' holds no prompts")
    return out


def real_tokens(x: torch.Tensor, pad_id: int | None) -> list[list[int]]:
    """Each prompt's tokens without its leading run of ``pad_id`` (the left padding of HF zoos)."""
    if pad_id is None:
        return x.tolist()
    real = (x != pad_id).long().cummax(-1).values.bool()
    return [row[m].tolist() for row, m in zip(x, real)]


def layout(seqs: list[list[int]], continuation: list[int], T: int, pad_id: int | None) -> Prompts:
    """``seqs`` (each with ``continuation`` appended, cut from the left to ``T``) as ``x [P, T]``: left-
    padded with ``pad_id`` when the models have one (HF zoos' convention: positions count from the
    first real token), else right-padded (causal models: no position reads a later one). Scored: every
    next token (no continuation), else the continuation's tokens."""
    P = len(seqs)
    x = torch.full((P, T), 0 if pad_id is None else pad_id, dtype=torch.long)
    score = torch.zeros(P, max(T - 1, 0), dtype=torch.bool)
    m = len(continuation)
    for i, s in enumerate(seqs):
        s = (list(s) + continuation)[-T:]
        start = T - len(s) if pad_id is not None else 0
        x[i, start : start + len(s)] = torch.as_tensor(s, dtype=torch.long)
        first = start + len(s) - 1 - m if m else start  # the position that reads the token before the first scored one
        score[i, max(first, start) : start + len(s) - 1] = True
    return Prompts(x, score)


def per_position_logits(models: Any, x: torch.Tensor) -> torch.Tensor:
    """Logits at every position ``[n, B, T, vocab]`` for token ids ``x [B, T]``: the family's own
    outputs when it reads out every position, else its ``all_positions()`` version (HF zoos)."""
    fam = models.family
    if getattr(fam, "causal", True) is False:
        raise UserError("extractor 'token-logprobs' needs causal language models; this transformer is not causal (model.causal = false)")
    if getattr(fam, "readout", "all") != "all":
        lm = getattr(fam, "all_positions", None)
        if lm is None:
            raise UserError(f"extractor 'token-logprobs' needs outputs at every position; these models read out "
                            f"'{fam.readout}' (train them with model.readout = \"all\", as tiny-lm does)")
        with torch.no_grad():
            out = lm().outputs(models.params, x.to(models.device), models.chunk)
    else:
        out = models.forward(x)
    if out.dim() != 4:
        raise UserError(f"extractor 'token-logprobs' needs outputs at every position [n, B, T, vocab]; these models give "
                        f"{list(out.shape)}")
    return out


@extractor("token-logprobs", kind="behavioural", files=("prompt_file",),
           bounds={"n_prompts": (1, None), "k": (0, None)})
def token_logprobs(models, prompts: str = "in_dist", prompt_file: str = "", n_prompts: int = 64, k: int = 0,
                   continuation: str = ""):
    """Per-token log-probabilities of each prompt's next tokens (or a continuation's): [n, scored (* k)].

    ``[n, n_scored]`` for ``k = 0``, ``[n, n_scored * k]`` otherwise; one forward pass over the
    population per slice of prompts.

    ``prompts`` names a probe set of the zoo (its first ``n_prompts``); ``prompt_file`` (a file of
    token ids, one prompt a line) replaces it. ``continuation`` (token ids, ``"12"`` or ``"12 7"``)
    is appended to every prompt and only its tokens are scored. ``k = 0`` records the log-probability
    of the token that follows; ``k > 0`` the log-probabilities of the ``k`` tokens most frequent
    among the scored ones (the same for every model; ties to the lower id) at each scored position.
    Columns are prompt-major, then position (then token); ``meta["scored_per_prompt"]`` counts each
    prompt's scored positions and ``meta["tokens"]`` lists the ``k`` tokens.
    """
    T = int(models.task.input_shape[0]) if models.task.input_shape else 0
    fam = models.family
    pad = getattr(fam, "pad_id", None)
    vocab = int(getattr(fam, "vocab", 0) or models.task.n_out)
    if prompt_file:
        seqs = read_prompt_file(prompt_file, vocab, T)[:n_prompts]
    else:
        x = probes(models, prompts, n_prompts)
        if x.is_floating_point() or x.dim() != 2:
            raise UserError(f"extractor 'token-logprobs' needs token prompts [n, T]; probe set '{prompts}' holds "
                            f"{'numbers' if x.is_floating_point() else 'tensors'} of shape {list(x.shape[1:])}")
        seqs = real_tokens(x.long(), pad)
    try:
        cont = [int(t) for t in re.split(r"[\s,]+", continuation.strip())] if continuation.strip() else []
    except ValueError:
        raise UserError(f"continuation of extractor 'token-logprobs' is token ids (e.g. '12 7'), got {continuation!r}") from None
    if not all(0 <= t < vocab for t in cont) or len(cont) >= T:
        raise UserError(f"continuation {continuation!r} of extractor 'token-logprobs' must be fewer than {T} token ids in [0, {vocab})")
    p = layout(seqs, cont, T, pad)
    if not bool(p.score.any()):
        raise UserError("extractor 'token-logprobs' has nothing to score: every prompt is a single token")
    chosen = None
    if k:
        counts = torch.bincount(p.target[p.score], minlength=vocab)
        chosen = torch.sort(-counts, stable=True).indices[: min(k, vocab)]
    n = len(models)
    step = max(1, SLICE_FLOATS // max(1, n * T * vocab))
    parts = []
    for i in range(0, len(p.x), step):
        lp = torch.log_softmax(per_position_logits(models, p.x[i : i + step])[:, :, :-1].float(), -1)  # [n, b, T-1, V]
        s = p.score[i : i + step]
        if chosen is None:
            parts.append(lp.gather(-1, p.target[i : i + step][None, ..., None].expand(n, -1, -1, 1))[..., 0][:, s])
        else:
            parts.append(lp[..., chosen.to(lp.device)][:, s].flatten(1))
    meta = {"scored_per_prompt": p.score.sum(1).tolist()}
    if chosen is not None:
        meta["tokens"] = chosen.tolist()
    return torch.cat(parts, 1), meta
