"""``token-similarity``: does a token model's output level follow how alike it sees the tokens of
its input? For each probe input, the mean pairwise cosine of its tokens' vectors in the model's own
token embedding (centred over the vocabulary); per model, the correlation over the probes of a
per-input output surface (the top-1 logit, the mean logit) with it.

Derived from the pizza mechanism of modular addition (Zhong et al., 2023): pizza's logits scale
with |e_a + e_b| over its key frequencies, a function of how similar the two input tokens'
embeddings are, and clock's do not (docs/results.md, "Intervals over rounding draws"). It reads no
label, diagnostic, task structure or frequency: the correlation is unchanged by any relabelling of
the tokens (on a probe set closed under it) and any rotation of the embedding space. Batched over
the model axis: one forward pass, one gather of the embedding rows, no loop over models.
"""

from __future__ import annotations

from typing import Any

import torch

from fingerprint.extractors.common import probes
from fingerprint.registry import extractor
from training.core.errors import UserError, choices

SURFACES = ("logit", "shift")
CORRELATIONS = ("pearson", "spearman")
APPLIES = "the built-in transformer with token inputs (vocab > 0) and HF causal LMs (import --hf)"


def embedding_of(models: Any, name: str = "token-similarity") -> torch.Tensor:
    """The models' token embedding ``[n, vocab, d]`` (the parameter ``family.token_embedding()``
    names), or the one-line error naming the architecture and where the extractor applies."""
    fam = models.family
    key = fam.token_embedding() if hasattr(fam, "token_embedding") else None
    if key is None or key not in models.params or models.params[key].dim() != 3:
        raise UserError(f"{name}: architecture '{fam.name}' has no token embedding matrix "
                        f"(inputs {list(models.task.input_shape)}); it applies to {APPLIES}")
    return models.params[key]


def token_similarity(embed: torch.Tensor, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """Mean pairwise cosine ``[n, P]`` of the centred embeddings of each input's tokens.

    ``embed [n, vocab, d]`` is centred over the vocabulary (the mean token removed), ``x [P, T]``
    holds token ids, ``real [P, T]`` (bool, default all) the positions that count (not padding).
    With unit vectors ``u_t`` the mean over pairs ``s < t`` of ``u_s . u_t`` is
    ``(|sum u|^2 - m) / (m (m - 1))`` for ``m`` real tokens: ``O(T d)`` per input, not ``O(T^2 d)``.
    For ``T = 2`` it is the cosine of the two tokens. Inputs with fewer than two real tokens are NaN.
    """
    used, x = torch.unique(x, return_inverse=True)  # only the rows the probes use: a 50k vocabulary is not copied
    e = embed[:, used.to(embed.device)].double() - embed.mean(1, keepdim=True, dtype=torch.float64)
    e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    if real is None:
        real = torch.ones(x.shape, dtype=torch.bool)
    w = real.to(e.dtype).to(e.device)
    m = w.sum(1)  # [P]
    s = torch.zeros(e.shape[0], x.shape[0], e.shape[2], dtype=e.dtype, device=e.device)
    for t in range(x.shape[1]):  # position by position: [n, P, d] at a time, not [n, P, T, d]
        s += e[:, x[:, t]] * w[None, :, t, None]
    sim = ((s * s).sum(-1) - m) / (m * (m - 1))
    return torch.where(m >= 2, sim, torch.full_like(sim, float("nan")))


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks ``[n, P]`` over the last axis (ties share the mean of their ranks, so the
    ranks do not depend on the inputs' order)."""
    srt = v.sort(1).values.contiguous()
    lo = torch.searchsorted(srt, v.contiguous(), right=False)
    hi = torch.searchsorted(srt, v.contiguous(), right=True)
    return (lo + hi - 1).to(torch.float64) / 2


def correlate(a: torch.Tensor, b: torch.Tensor, kind: str = "pearson") -> torch.Tensor:
    """Per row, the correlation ``[n]`` over the last axis of ``a [n, P]`` with ``b [n, P]`` (float64;
    0 where either is constant)."""
    a, b = a.double(), b.double()
    if kind == "spearman":
        a, b = _ranks(a), _ranks(b)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)


def output_surfaces(out: torch.Tensor, surfaces: list[str]) -> torch.Tensor:
    """``[n, P, n_out]`` logits (at one position per input) -> ``[n, len(surfaces), P]``: the top-1
    logit (``logit``) and the mean logit over classes (``shift``: the per-input offset a softmax
    ignores), both raw."""
    out = out.double()
    by = {"logit": lambda: out.max(-1).values, "shift": lambda: out.mean(-1)}
    return torch.stack([by[s]() for s in surfaces], 1)


@extractor("token-similarity", kind="mechanistic", bounds={"n_probes": (0, None)})
def token_similarity_reading(models, probe_set: str = "in_dist", n_probes: int = 256,
                             surfaces: list = ["logit"], correlation: str = "pearson"):  # noqa: B006 - a plain, hashable default
    """Correlation over probe inputs of each output surface with the model's own similarity of the
    input's tokens: [n, len(surfaces)], signed.

    Per input, the similarity is the mean pairwise cosine of its tokens' rows of the token
    embedding, centred over the vocabulary (for two tokens, their cosine); padding (HF zoos) does
    not count, and inputs with fewer than two real tokens are left out. The surfaces are read at
    the last output position the model returns: ``logit`` (raw top-1 logit),
    ``shift`` (mean logit over classes). ``correlation``: ``pearson`` or ``spearman`` (average ranks).
    Token models only: the built-in transformer with ``vocab > 0`` and HF causal LMs; anything
    else is a one-line error. Invariant to relabelling the tokens (when the probe set is closed
    under it) and to rotating the embedding space.
    """
    bad = [s for s in map(str, surfaces) if s not in SURFACES]
    if bad or not surfaces:
        raise UserError(f"unknown surface {bad[0] if bad else '(none)'!r} for token-similarity (valid: {choices(SURFACES)})")
    if correlation not in CORRELATIONS:
        raise UserError(f"unknown correlation {correlation!r} for token-similarity (valid: {choices(CORRELATIONS)})")
    embed = embedding_of(models)
    x = probes(models, probe_set, n_probes).long()
    if x.dim() != 2:
        raise UserError(f"token-similarity needs token-id inputs [P, T]; probe set '{probe_set}' is {list(x.shape)}")
    pad = getattr(models.family, "pad_id", None)  # HF zoos: left padding, the leading run of pad ids
    real = (x != pad).long().cummax(1).values.bool() if pad is not None else torch.ones_like(x, dtype=torch.bool)
    keep = real.sum(1) >= 2
    if int(keep.sum()) < 3:
        raise UserError(f"token-similarity needs at least 3 probe inputs with two or more tokens; "
                        f"probe set '{probe_set}' has {int(keep.sum())}")
    x, real = x[keep], real[keep]
    sim = token_similarity(embed, x, real)  # [n, P]
    out = models.forward(x)
    out = out.reshape(out.shape[0], out.shape[1], -1, out.shape[-1])[:, :, -1]  # [n, P, n_out]: the last position
    surf = output_surfaces(out, [str(s) for s in surfaces])  # [n, S, P]
    r = torch.stack([correlate(sim, surf[:, k], correlation) for k in range(surf.shape[1])], 1)
    return r.float(), {"surfaces": [str(s) for s in surfaces], "inputs": int(len(x)), "positions": int(x.shape[1])}
