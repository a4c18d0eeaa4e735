"""Attribution fingerprints: which inputs a model's output reads.

``input-saliency`` is the share of each input coordinate in the size of the output's gradient with
respect to the input, over a probe set: for models that compute the same outputs in different ways
(one reads copy A of a feature, another copy B of it; one a shape, another a colour that coincides
with it on the training data), their outputs agree where the copies agree, but the gradients do not.
It needs only the family's forward pass (built-in or imported), no named layer and no permutation
groups, and reads real-valued inputs (token ids have no input gradient). It is a property of the
function alone (two models that compute the same function have the same rows), so it is behavioural,
read from the gradients rather than the outputs: its own voter in the population's answer.
"""

from __future__ import annotations

from typing import Any

import torch

from fingerprint.extractors.common import generator, probes
from fingerprint.registry import extractor
from training.core.errors import UserError

ONE_VALUE = "a single input value (a 1-D regression input) takes all of every model's input gradient (a share of 1): nothing to compare"
MODELS_PER_PASS = 128  # at most this many models differentiated in one pass (their activations and graph held at once)
# and about this many floats per pass: a model's graph on one probe is taken as 32 input-sized activations plus
# its weights (a 2-conv CNN on 3 x 16 x 16 inputs held 1.6 GB for 128 models x 64 probes; now 21 models a pass)
PASS_FLOATS = 1 << 25


def models_per_pass(n_probes: int, input_values: int, n_params: int) -> int:
    """Models differentiated together: :data:`PASS_FLOATS` over a model's estimated graph, in ``[1, MODELS_PER_PASS]``."""
    per_model = n_probes * input_values * 32 + n_params
    return max(1, min(MODELS_PER_PASS, PASS_FLOATS // max(per_model, 1)))


def output_directions(n_out: int, dim: int, seed: int) -> torch.Tensor:
    """``[m, n_out]`` directions in output space that sum to zero across the outputs (a shift of all
    logits changes no prediction): an orthonormal basis of that space when it has at most ``dim``
    dimensions (``m = n_out - 1``), else ``dim`` random Gaussian directions in it, scaled so that
    their squared projections estimate the squared norm. One output: ``[[1.0]]``."""
    if n_out == 1:
        return torch.ones(1, 1)
    centre = torch.eye(n_out) - 1.0 / n_out
    if n_out - 1 <= dim:
        q, _ = torch.linalg.qr(centre[:, : n_out - 1].double())
        return q.T.float()
    r = torch.randn(dim, n_out, generator=generator(seed)) @ centre
    return r / (dim ** 0.5)


def saliency(models: Any, x: torch.Tensor, dim: int, seed: int, chunk: int | None = None) -> tuple[torch.Tensor, int]:
    """Squared gradients ``[n, P, D]`` of the outputs along :func:`output_directions` (summed over
    the directions) with respect to each model's input ``x [P, *input_shape]`` (``D`` its values),
    and the number of directions.

    Each model of a chunk is given its own copy of the probes (a family's per-model inputs
    ``[n, P, ...]``), so one backward pass per direction gives every model its own input gradient
    (models do not interact). A readout over positions is read at the last one."""
    fam = models.family
    params = {k: v.detach() for k, v in models.params.items()}
    n = len(models.model_ids)
    if chunk is None:
        chunk = models_per_pass(len(x), x[0].numel(), sum(v[0].numel() for v in params.values()))
    d = None
    out = []
    for s in range(0, n, chunk):
        sub = {k: v[s : s + chunk] for k, v in params.items()}
        c = min(chunk, n - s)
        xr = x.to(models.device).expand(c, *x.shape).clone().requires_grad_(True)  # [c, P, ...]: one copy per model
        with torch.enable_grad():
            y = fam(sub, xr)  # [c, P, ..., n_out]
            y = y.reshape(c, len(x), -1, y.shape[-1])[:, :, -1]  # [c, P, n_out]
            if d is None:  # the outputs the models give, whatever the zoo declared
                d = output_directions(y.shape[-1], dim, seed).to(models.device)
            sq = torch.zeros_like(xr)
            for j, u in enumerate(d):
                (g,) = torch.autograd.grad((y * u).sum(), xr, retain_graph=j < len(d) - 1)
                sq += g.detach() ** 2
        out.append(sq.reshape(c, len(x), -1))
    return torch.cat(out), 0 if d is None else len(d)


@extractor("input-saliency", kind="behavioural", reads="gradients", scale="common",
           bounds={"n_probes": (1, None), "dim": (1, None)})
def input_saliency(models, probe_set: str = "in_dist", n_probes: int = 64, dim: int = 16, seed: int = 0):
    """Each input value's share of the output's input gradient on ``n_probes`` probes: ``[n, D]``
    (``D`` the values of one input), each row summing to 1.

    For each model and input value, the root mean square over the probes of the gradient's norm
    over output directions that sum to zero across the outputs (so a shift of all logits, which
    changes no prediction, adds nothing; ``dim`` random ones beyond ``dim + 1`` outputs, drawn from
    ``seed``), divided by the row's sum: where a model looks, not how steep its outputs are (logits
    that are only scaled give the same row). Invariant to permutations of hidden units; not to permutations of the inputs, whose order means something."""
    x = probes(models, probe_set, n_probes)
    if not x.is_floating_point():
        raise UserError(f"input-saliency reads real-valued inputs; probe set '{probe_set}' holds {x.dtype} values, which "
                        "have no input gradient (token ids: the default set leaves it out; images stored as integers: "
                        "give float probes)")
    if x[0].numel() == 1:
        raise UserError(f"input-saliency: {ONE_VALUE}")
    sq, m = saliency(models, x.float(), dim, seed)
    rms = sq.mean(1).sqrt()  # [n, D]
    total = rms.sum(1, keepdim=True)  # 0 for a model whose outputs do not move on these probes: its row stays 0
    return rms / total.clamp_min(torch.finfo(rms.dtype).tiny), {"probe_set": probe_set, "directions": m}


def substitutes(x: torch.Tensor, seed: int, pad_id: int | None = None) -> torch.Tensor:
    """For token probes ``x [P, T]``, a token ``[P, T]`` to put in place of each one: drawn (from
    ``seed``) among the other tokens the probes hold at that position, never the one it replaces, so
    always a token the models take there (an imported module may embed each position with its own
    vocabulary). A position where every probe holds one token keeps it (nothing to replace it with:
    its share is 0), and so does left padding (``pad_id``, HF zoos: each prompt's leading run of it),
    which is never drawn either: replacing a pad would lengthen the prompt, not change a token."""
    real = torch.ones_like(x, dtype=torch.bool) if pad_id is None else (x != pad_id).long().cummax(-1).values.bool()
    gen = generator(seed)
    out = x.clone()
    for t in range(x.shape[1]):  # positions, not models: a few dozen at most
        pool = torch.unique(x[real[:, t], t])
        if pad_id is not None:
            pool = pool[pool != pad_id]
        if len(pool) < 2:
            continue
        rows = torch.nonzero(real[:, t] & torch.isin(x[:, t], pool)).flatten()
        draw = torch.randint(0, len(pool) - 1, (len(rows),), generator=gen)  # among the others at this position
        own = torch.searchsorted(pool, x[rows, t])
        out[rows, t] = pool[draw + (draw >= own).long()]
    return out


@extractor("token-occlusion", kind="behavioural", reads="occlusions", scale="common", bounds={"n_probes": (1, None)})
def token_occlusion(models, probe_set: str = "in_dist", n_probes: int = 64, seed: int = 0):
    """Each input position's share of how far the output moves when its token is replaced: ``[n, T]``,
    each row summing to 1 (0 for a model whose outputs no replacement moves).

    For each probe and position, the token is swapped for another token the probes hold at that
    position (drawn from ``seed``, the same for every model; :func:`substitutes`), and the change of the model's log-probabilities at its
    read-out (the last position of a per-position output) is measured as their Euclidean distance
    (a shift of all logits, which changes no prediction, adds nothing); the root mean square over the
    probes, divided by the row's sum: where a model reads its answer from, not how confident it is.
    The token version of ``input-saliency`` (token ids have no input gradient): models that give the
    same answers by different routes (copying a token vs reversing the sequence, a rule that reads
    the first token vs one that counts) move on different positions. A property of the function
    alone; its own voter in the population's answer."""
    x = probes(models, probe_set, n_probes)
    if x.is_floating_point():
        raise UserError(f"token-occlusion reads token ids; probe set '{probe_set}' holds {x.dtype} values "
                        "(real-valued inputs: input-saliency)")
    if x.dim() != 2 or x.shape[1] < 2:
        raise UserError(f"token-occlusion needs token sequences [probes, positions] of two or more positions, got "
                        f"{list(x.shape)}")
    sub = substitutes(x, seed, getattr(models.family, "pad_id", None))
    if bool((sub == x).all()):
        raise UserError(f"token-occlusion: no position of probe set '{probe_set}' holds two different tokens; nothing "
                        "to put in place of any")

    def logp(inputs: torch.Tensor) -> torch.Tensor:  # [n, P, n_out] at the read-out
        y = models.forward(inputs)
        return torch.log_softmax(y.reshape(y.shape[0], len(inputs), -1, y.shape[-1])[:, :, -1].double(), -1)

    base = logp(x)
    sq = []
    for t in range(x.shape[1]):  # one position at a time: [n, P, n_out] held, not [n, P * T, n_out]
        xt = x.clone()
        xt[:, t] = sub[:, t]
        sq.append((logp(xt) - base).pow(2).sum(-1))  # [n, P]
    rms = torch.stack(sq, -1).mean(1).sqrt()  # [n, T]
    total = rms.sum(1, keepdim=True)
    return (rms / total.clamp_min(torch.finfo(rms.dtype).tiny)).float(), {"probe_set": probe_set}
